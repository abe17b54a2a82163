-- outputs_changed: the output drift of a series on its fixed inputs stepped (an export, a
-- quantization or an upgrade computes something else; collector/regress/outputs.py).
ALTER TABLE regressions DROP CONSTRAINT regressions_kind_check;
ALTER TABLE regressions ADD CONSTRAINT regressions_kind_check
    CHECK (kind IN ('regression', 'improvement', 'host_drift', 'outputs_changed'));
