"""Pins, cache keys, the manifest, listing and pruning (collector/adapters/envs.py), on fabricated
cache directories: no pip, no interpreter started."""

from __future__ import annotations

import fcntl
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.adapters.envs import (
    MANIFEST,
    EnvironmentBuildError,
    EnvironmentCache,
    pip_reason,
)
from collector.domain.errors import InputError
from collector.domain.packages import Pin, parse_pins, record_names


def test_pins_are_parsed_canonicalised_and_sorted() -> None:
    pins = parse_pins(["transformers==5.23.0,Tokenizers==0.22", "Slow_Poke==01.0  torch==2.13.0"])
    assert pins == (Pin("slow-poke", "1.0"), Pin("tokenizers", "0.22"),
                    Pin("torch", "2.13.0"), Pin("transformers", "5.23.0"))
    assert str(pins[0]) == "slow-poke==1.0"
    assert parse_pins([]) == () and parse_pins(["  "]) == ()
    assert parse_pins(["a==1.0", "a==1.0"]) == (Pin("a", "1.0"),)  # the same pin twice
    assert Pin("Slow_Poke", "01.0") == Pin("slow-poke", "1.0")


@pytest.mark.parametrize("text", ["transformers", "transformers>=5.0", "transformers==5.*",
                                  "transformers[torch]==5.23.0", "transformers==5.2;x",
                                  "transformers===5.23.0", "==5.0", "transformers==abc",
                                  "transformers==5.0,<6", "http://example.com/x.whl"])
def test_anything_but_name_equals_exact_version_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_pins([text])
    # The message names the offending item (a comma-separated text is split first).
    assert any(part and part in str(caught.value) for part in text.split(","))


def test_one_package_pinned_at_two_versions_is_an_error() -> None:
    with pytest.raises(InputError, match="slowpoke is pinned twice"):
        parse_pins(["slowpoke==1.0.0", "SlowPoke==1.4.0"])


def test_recorded_names_are_the_pins_plus_torch_and_transformers() -> None:
    assert record_names(parse_pins(["slowpoke==1.0.0", "torch==2.13.0"])) == (
        "slowpoke", "torch", "transformers")
    assert record_names(()) == ("torch", "transformers")


def test_the_key_depends_on_pins_base_and_pip_arguments_only(tmp_path: Path) -> None:
    pins = parse_pins(["b==1.0", "a==2.0"])
    one = EnvironmentCache(tmp_path / "one")
    assert one.key(pins) == EnvironmentCache(tmp_path / "two").key(tuple(reversed(pins)))
    assert one.key(pins) == one.key(parse_pins(["a==02.0", "B==1.0"]))  # normalised
    assert len(one.key(pins)) == 64
    assert one.key(pins) != one.key(parse_pins(["b==1.0", "a==2.1"]))
    assert one.key(pins) != EnvironmentCache(tmp_path, pip_args=["--no-index"]).key(pins)
    # Another interpreter path (a symlink to this one): another base.
    link = tmp_path / "python-link"
    link.symlink_to(sys.executable)
    assert one.key(pins) != EnvironmentCache(tmp_path, base_python=str(link)).key(pins)


def _fake_env(cache: EnvironmentCache, pins: tuple[Pin, ...], *, size: int,
              last_used: datetime) -> Path:
    key = cache.key(pins)
    folder = cache.root / key[:16]
    (folder / "bin").mkdir(parents=True)
    (folder / "payload").write_bytes(b"x" * size)
    (folder / MANIFEST).write_text(json.dumps({
        "key": key, "pins": [{"name": p.name, "version": p.version} for p in pins],
        "versions": {p.name: p.version for p in pins}, "size_bytes": size,
        "created": last_used.isoformat(), "last_used": last_used.isoformat()}))
    return folder


def test_a_cache_hit_reads_only_the_manifest_and_touches_last_used(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    pins = parse_pins(["slowpoke==1.0.0"])
    old = datetime.now(timezone.utc) - timedelta(days=3)
    folder = _fake_env(cache, pins, size=10, last_used=old)
    started = time.monotonic()
    env = cache.ensure(pins)  # no venv behind it: only a hit can succeed
    assert time.monotonic() - started < 1.0
    assert env.cache_hit and env.path == folder and env.python == str(folder / "bin" / "python")
    assert env.versions == {"slowpoke": "1.0.0"} and env.pins == pins
    (entry,) = cache.entries()
    assert entry.last_used > old + timedelta(days=2)


def test_entries_list_complete_environments_least_recently_used_first(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    now = datetime.now(timezone.utc)
    _fake_env(cache, parse_pins(["a==1"]), size=10, last_used=now - timedelta(hours=1))
    _fake_env(cache, parse_pins(["b==1"]), size=10, last_used=now - timedelta(hours=5))
    (tmp_path / "half-built").mkdir()  # no manifest: never an entry
    (tmp_path / "x.lock").write_text("")
    assert [e.pins for e in cache.entries()] == [parse_pins(["b==1"]), parse_pins(["a==1"])]
    assert EnvironmentCache(tmp_path / "absent").entries() == []


def test_prune_by_age_then_by_size_least_recently_used_first(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    now = datetime.now(timezone.utc)
    ages = {"old": 40, "mid": 3, "new": 1, "newest": 0}
    folders = {name: _fake_env(cache, parse_pins([f"{name}==1"]), size=100,
                               last_used=now - timedelta(days=days))
               for name, days in ages.items()}
    removed = cache.prune(max_age_days=30)
    assert [e.pins for e in removed] == [parse_pins(["old==1"])]
    assert not folders["old"].exists()
    removed = cache.prune(max_bytes=250)  # three of 100 bytes: the least recently used goes
    assert [e.pins for e in removed] == [parse_pins(["mid==1"])]
    assert [e.pins[0].name for e in cache.entries()] == ["new", "newest"]
    assert cache.prune(max_bytes=10_000, max_age_days=30) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prune_clears_killed_builds_but_not_one_in_progress(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    dead = tmp_path / ".build-aaaaaaaaaaaaaaaa-1234abcd"
    live = tmp_path / ".build-bbbbbbbbbbbbbbbb-5678abcd"
    dead.mkdir()
    live.mkdir()
    with (tmp_path / "bbbbbbbbbbbbbbbb.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a building process holds it
        assert cache.prune() == []
        assert not dead.exists() and live.exists()


def test_an_environment_being_rebuilt_is_not_pruned(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    old = datetime.now(timezone.utc) - timedelta(days=100)
    folder = _fake_env(cache, parse_pins(["a==1"]), size=10, last_used=old)
    with (tmp_path / f"{folder.name}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cache.prune(max_age_days=1) == []
    assert folder.exists()
    assert len(cache.prune(max_age_days=1)) == 1


def test_the_cache_root_defaults_to_the_environment_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_ENV_CACHE", str(tmp_path / "envs"))
    assert EnvironmentCache().root == tmp_path / "envs"
    monkeypatch.delenv("COLLECTOR_ENV_CACHE")
    assert EnvironmentCache().root == Path.home() / ".cache" / "collector" / "envs"


def test_pip_reason_keeps_the_errors_and_a_conflicts_explanation() -> None:
    missing = ("Looking in links: /tmp/index\n"
               "ERROR: Could not find a version that satisfies the requirement slowpoke==9.9 "
               "(from versions: 1.0.0, 1.4.0)\n"
               "ERROR: No matching distribution found for slowpoke==9.9\n")
    assert pip_reason(missing).endswith("No matching distribution found for slowpoke==9.9")
    assert "Looking in links" not in pip_reason(missing)
    conflict = ("Collecting a==1.0\n"
                "ERROR: Cannot install a==1.0 and b==2.0 because these package versions have "
                "conflicting dependencies.\n\n"
                "The conflict is caused by:\n"
                "    a 1.0 depends on c<2\n"
                "    b 2.0 depends on c>=2\n\n"
                "To fix this you could try to:\n"
                "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n")
    reason = pip_reason(conflict)
    assert reason == ("Cannot install a==1.0 and b==2.0 because these package versions have "
                      "conflicting dependencies.; the conflict is caused by: a 1.0 depends on "
                      "c<2, b 2.0 depends on c>=2")
    many = ("ERROR: Could not find a version that satisfies the requirement t==99 (from "
            f"versions: {', '.join(f'1.{i}' for i in range(30))})\n")
    assert pip_reason(many) == ("Could not find a version that satisfies the requirement t==99 "
                                "(from versions: 1.0, ... 22 more ..., 1.23, 1.24, 1.25, 1.26, "
                                "1.27, 1.28, 1.29)")
    assert pip_reason("Traceback\nsomething broke\n") == "Traceback; something broke"


def test_the_workers_package_versions_are_part_of_the_protocol_and_checked() -> None:
    from collector.adapters.measure.protocol import WorkerEnvironment

    given = {"torch_version": "2.13.0", "packages": {"slowpoke": "1.0.0"}}
    assert WorkerEnvironment.model_validate(given).packages == {"slowpoke": "1.0.0"}
    assert WorkerEnvironment.model_validate({}).packages == {}
    for bad in (["slowpoke"], {"slowpoke": 1}, {"": "1.0"}, {"x": "v" * 201},
                {f"p{i}": "1" for i in range(501)}):
        with pytest.raises(ValidationError, match="packages"):
            WorkerEnvironment.model_validate({"packages": bad})


def test_a_cache_that_cannot_be_created_is_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cache = EnvironmentCache(tmp_path / "file" / "envs")
    with pytest.raises(EnvironmentBuildError, match="cannot create the environment cache"):
        cache.ensure(parse_pins(["slowpoke==1.0.0"]))


def test_a_base_interpreter_that_does_not_run_is_a_build_error(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path, base_python=str(tmp_path / "no-python"))
    with pytest.raises(EnvironmentBuildError, match="does not run"):
        cache.ensure(parse_pins(["slowpoke==1.0.0"]))
