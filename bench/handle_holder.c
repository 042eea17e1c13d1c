/* handle_holder: many processes holding many live PGconn handles, for the
 * scale section of bench/bench.py.
 *
 *   handle_holder PROCS HANDLES CONNINFO
 *
 * Forks PROCS children; each calls PQconnectStart(CONNINFO) HANDLES times
 * and keeps every handle (CONNINFO names a refused port: a failed handle is
 * a live PGconn until PQfinish, so no server needs that many backends).
 * Prints "ready procs=P handles=H" once every child holds its handles, then
 * waits for a line on stdin (or EOF), finishes every handle in every child
 * (SIGUSR1) and prints "done" once the children exited. */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t finish;

static void on_usr1(int sig)
{
	(void)sig;
	finish = 1;
}

static void child(int handles, const char *conninfo, int ready_fd)
{
	PGconn **conns = calloc(handles, sizeof(*conns));
	sigset_t block, old;

	if (!conns)
		_exit(1);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (int i = 0; i < handles; i++)
		if (!(conns[i] = PQconnectStart(conninfo)))
			_exit(1);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	close(ready_fd);
	while (!finish)
		sigsuspend(&old);
	for (int i = 0; i < handles; i++)
		PQfinish(conns[i]);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: handle_holder PROCS HANDLES CONNINFO\n");
		return 2;
	}
	int procs = atoi(argv[1]), handles = atoi(argv[2]);
	pid_t *pids = calloc(procs, sizeof(*pids));
	int fds[2];
	char c;

	signal(SIGUSR1, on_usr1);
	if (!pids || pipe(fds) != 0)
		return 1;
	for (int i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[i] == 0) {
			close(fds[0]);
			child(handles, argv[3], fds[1]);
		}
	}
	close(fds[1]);
	for (int i = 0; i < procs; i++)
		if (read(fds[0], &c, 1) != 1) {
			fprintf(stderr, "handle_holder: a child failed\n");
			return 1;
		}
	printf("ready procs=%d handles=%d\n", procs, handles);
	fflush(stdout);
	while ((c = getchar()) != EOF && c != '\n')
		;
	for (int i = 0; i < procs; i++)
		kill(pids[i], SIGUSR1);
	for (int i = 0; i < procs; i++)
		waitpid(pids[i], NULL, 0);
	printf("done\n");
	fflush(stdout);
	return 0;
}
