// libpq, loaded on first use: only --server calls PQ* functions (connleak's
// own connection, pg_activity_reader.cpp), and linking libpq would map its
// TLS, Kerberos and LDAP libraries (~8 MB of RssFile) into every run.
// libpq-fe.h stays the source of the types and constants.
#pragma once

#include <libpq-fe.h>

#include "result.h"

namespace connleak {

// The PQ* functions connleak calls, looked up by name in libpq.so.5.
struct LibpqApi {
    decltype(&::PQconninfoParse) PQconninfoParse;
    decltype(&::PQconninfoFree) PQconninfoFree;
    decltype(&::PQfreemem) PQfreemem;
    decltype(&::PQconnectStartParams) PQconnectStartParams;
    decltype(&::PQconnectPoll) PQconnectPoll;
    decltype(&::PQsetNoticeProcessor) PQsetNoticeProcessor;
    decltype(&::PQstatus) PQstatus;
    decltype(&::PQsocket) PQsocket;
    decltype(&::PQerrorMessage) PQerrorMessage;
    decltype(&::PQfinish) PQfinish;
    decltype(&::PQsendQuery) PQsendQuery;
    decltype(&::PQisBusy) PQisBusy;
    decltype(&::PQconsumeInput) PQconsumeInput;
    decltype(&::PQgetResult) PQgetResult;
    decltype(&::PQresultStatus) PQresultStatus;
    decltype(&::PQresultErrorMessage) PQresultErrorMessage;
    decltype(&::PQntuples) PQntuples;
    decltype(&::PQgetisnull) PQgetisnull;
    decltype(&::PQgetvalue) PQgetvalue;
    decltype(&::PQclear) PQclear;
};

// Loads libpq once (later calls give the same table, or the same error):
// the file named by $CONNLEAK_LIBPQ when set, else libpq.so.5 from the
// loader's search path. Never unloaded. The error is one line: the file and
// dlerror()'s reason, or the first function it lacks.
const Result<const LibpqApi*>& libpq_api();

}  // namespace connleak
