/* Callgrind client requests, callable through ctypes (collector/runner/callgrind.py).
 *
 * A client request is a magic no-op instruction sequence that valgrind recognises; the
 * macros below expand to it inline, so they need a C compiler and valgrind's headers
 * (valgrind/callgrind.h), not valgrind's libraries. Outside valgrind every function is a
 * harmless no-op and collector_running_on_valgrind() returns 0.
 *
 * Compiled on first use with `cc -shared -fPIC -O2` into the collector's cache directory
 * (collector/runner/valgrind.py); the cache key is a hash of this file and the command.
 */
#include <valgrind/callgrind.h>

int collector_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }

void collector_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }

void collector_stop_instrumentation(void) { CALLGRIND_STOP_INSTRUMENTATION; }

void collector_zero_stats(void) { CALLGRIND_ZERO_STATS; }

/* Writes a profile dump (callgrind.out.<pid>.<n>) of the counts since the last zero or
 * dump, then zeroes them; `reason` goes into the dump's "Trigger:" line. */
void collector_dump_stats_at(const char *reason) { CALLGRIND_DUMP_STATS_AT(reason); }
