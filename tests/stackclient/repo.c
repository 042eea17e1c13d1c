/* The acquiring functions: each the caller of libpq in "direct" mode. */
#include "stackclient.h"

NOINLINE static PGconn *acquire_a(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	g_depth_marker += 2;
	return c;
}

NOINLINE static PGconn *acquire_b(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	g_depth_marker += 3;
	return c;
}

NOINLINE long repo_a(const char *conninfo, int glue, int keep)
{
	PGconn *c = glue ? db_open(conninfo) : acquire_a(conninfo);

	keep_or_finish(c, keep);
	return g_depth_marker;
}

NOINLINE long repo_b(const char *conninfo, int glue, int keep)
{
	PGconn *c = glue ? db_open(conninfo) : acquire_b(conninfo);

	keep_or_finish(c, keep);
	return g_depth_marker;
}
