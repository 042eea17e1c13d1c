/* stackclient: libpq connections acquired three calls deep from two
 * different functions, in several compilation units, for connleak's stack
 * tests (built with and without frame pointers).
 *
 *   stackclient MODE CONNINFO NA NB KEEP_A KEEP_B
 *
 * MODE direct: main -> service_a -> repo_a -> acquire_a -> PQconnectdb
 *              main -> service_b -> repo_b -> acquire_b -> PQconnectdb
 * MODE glue:   main -> service_a -> repo_a -> db_open -> PQconnectdb
 *              main -> service_b -> repo_b -> db_open -> PQconnectdb
 *              (one caller of libpq for both: only the stack tells them apart)
 *
 * Protocol on stdout/stdin (EOF at any wait: exit at once):
 *   "ready pid=P"            then waits for a line
 *   NA connections by path a (all but KEEP_A finished at once), NB by path b
 *   "done acquired=N held=H" then waits for a line
 *   finishes the held ones
 *   "finished"               then waits for a line, exits 0 */
#ifndef STACKCLIENT_H
#define STACKCLIENT_H

#include <libpq-fe.h>

#define NOINLINE __attribute__((noinline, noclone))

/* glue.c */
PGconn *db_open(const char *conninfo);
void keep_or_finish(PGconn *c, int keep);
extern volatile long g_depth_marker;

/* repo.c */
long repo_a(const char *conninfo, int glue, int keep);
long repo_b(const char *conninfo, int glue, int keep);

/* service.c */
long service_a(const char *conninfo, int glue, int n, int keep);
long service_b(const char *conninfo, int glue, int n, int keep);

/* main.c */
void die(const char *what);
void hold(PGconn *c);

#endif
