"""The tests' own asynchronous connect through libpq (ctypes): PQconnectPoll
called until it ends, waiting on the socket the way libpq asks."""

import select

PGRES_POLLING_FAILED, PGRES_POLLING_READING, PGRES_POLLING_WRITING, PGRES_POLLING_OK = 0, 1, 2, 3


def poll_connect(pq, conn, timeout=30):
    """Polls CONN (from PQconnectStart) to its end; returns the last
    PostgresPollingStatusType: PGRES_POLLING_OK or PGRES_POLLING_FAILED."""
    state = PGRES_POLLING_WRITING
    while state not in (PGRES_POLLING_FAILED, PGRES_POLLING_OK):
        fd = pq.PQsocket(conn)
        if state == PGRES_POLLING_READING:
            select.select([fd], [], [], timeout)
        else:
            select.select([], [fd], [], timeout)
        state = pq.PQconnectPoll(conn)
    return state
