/* Driver glue: the one function of "glue" mode that calls libpq. */
#include <stdlib.h>

#include "stackclient.h"

volatile long g_depth_marker;

NOINLINE PGconn *db_open(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	g_depth_marker++; /* no tail call: this frame stays on the stack */
	return c;
}

NOINLINE void keep_or_finish(PGconn *c, int keep)
{
	if (PQstatus(c) != CONNECTION_OK)
		die("connection failed");
	if (keep)
		hold(c);
	else
		PQfinish(c);
}
