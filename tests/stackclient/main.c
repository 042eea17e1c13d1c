/* stackclient: see stackclient.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stackclient.h"

static PGconn *g_held[4096];
static int g_nheld;
static long g_acquired;

void die(const char *what)
{
	fprintf(stderr, "stackclient: error: %s\n", what);
	exit(1);
}

void hold(PGconn *c)
{
	if (g_nheld == (int)(sizeof(g_held) / sizeof(g_held[0])))
		die("too many held connections");
	g_held[g_nheld++] = c;
}

static void wait_line(void)
{
	char line[256];

	if (!fgets(line, sizeof(line), stdin))
		exit(0);
}

static int arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 0 || v > 4096) {
		fprintf(stderr, "stackclient: bad number %s\n", s);
		exit(2);
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	if (argc != 7 || (strcmp(argv[1], "direct") && strcmp(argv[1], "glue"))) {
		fprintf(stderr, "usage: stackclient direct|glue CONNINFO NA NB KEEP_A KEEP_B\n");
		return 2;
	}
	int glue = strcmp(argv[1], "glue") == 0;
	const char *ci = argv[2];
	int na = arg(argv[3]), nb = arg(argv[4]), ka = arg(argv[5]), kb = arg(argv[6]);

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready pid=%d\n", (int)getpid());
	wait_line();
	long r = service_a(ci, glue, na, ka);
	r += service_b(ci, glue, nb, kb);
	g_acquired = na + nb;
	printf("done acquired=%ld held=%d marker=%ld\n", g_acquired, g_nheld, r > 0 ? 1L : 0L);
	wait_line();
	for (int i = 0; i < g_nheld; i++)
		PQfinish(g_held[i]);
	g_nheld = 0;
	printf("finished\n");
	wait_line();
	return 0;
}
