/* The services, one level above the repositories. */
#include "stackclient.h"

NOINLINE long service_a(const char *conninfo, int glue, int n, int keep)
{
	long sum = 0;

	for (int i = 0; i < n; i++)
		sum += repo_a(conninfo, glue, i < keep);
	return sum + 1;
}

NOINLINE long service_b(const char *conninfo, int glue, int n, int keep)
{
	long sum = 0;

	for (int i = 0; i < n; i++)
		sum += repo_b(conninfo, glue, i < keep);
	return sum + 1;
}
