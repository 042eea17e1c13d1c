/* forker: many short-lived libpq processes, for connleak's exactness with
 * processes that exit between two reads of its maps.
 *
 *   forker CONNINFO N [PARALLEL]
 *
 * Forks N children (at most PARALLEL, default 8, at a time), each doing one
 * PQconnectdb + PQfinish and exiting at once: 0 if the connection was made,
 * 1 if not (a failed connect is still an acquisition and a release). Reaps
 * them and prints "forker pid=P children=N ok=K". Exits 0 unless a child
 * died otherwise. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	int ok = PQstatus(conn) == CONNECTION_OK;

	PQfinish(conn);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	long n, parallel = 8, started = 0, running = 0, ok = 0, bad = 0;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: forker CONNINFO N [PARALLEL]\n");
		return 2;
	}
	n = atol(argv[2]);
	if (argc == 4)
		parallel = atol(argv[3]);
	if (n < 0 || parallel < 1) {
		fprintf(stderr, "forker: bad N or PARALLEL\n");
		return 2;
	}
	while (started < n || running > 0) {
		int status;

		if (started < n && running < parallel) {
			pid_t pid = fork();

			if (pid < 0) {
				perror("forker: fork");
				return 1;
			}
			if (pid == 0)
				_exit(child(argv[1]));
			started++;
			running++;
			continue;
		}
		if (wait(&status) < 0) {
			perror("forker: wait");
			return 1;
		}
		running--;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
		else if (!WIFEXITED(status))
			bad++;
	}
	printf("forker pid=%d children=%ld ok=%ld\n", (int)getpid(), n, ok);
	fflush(stdout);
	return bad ? 1 : 0;
}
