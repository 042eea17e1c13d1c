#include "libpq_api.h"

#include <cstdlib>
#include <dlfcn.h>
#include <string>
#include <type_traits>

namespace connleak {
namespace {

Result<const LibpqApi*> load()
{
    const char* env = std::getenv("CONNLEAK_LIBPQ");
    const std::string file = env && *env ? env : "libpq.so.5";
    // RTLD_LOCAL: libpq's symbols stay out of the global namespace, so
    // nothing loaded later (libdw's debuginfod client) binds to them.
    void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char* why = dlerror();
        return Error{"cannot load libpq (" + std::string(why ? why : file) + ")"};
    }
    static LibpqApi api;
    std::string missing;
    auto look = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
        if (!fn && missing.empty())
            missing = name;
    };
#define CONNLEAK_PQ(name) look(api.name, #name)
    CONNLEAK_PQ(PQconninfoParse);
    CONNLEAK_PQ(PQconninfoFree);
    CONNLEAK_PQ(PQfreemem);
    CONNLEAK_PQ(PQconnectStartParams);
    CONNLEAK_PQ(PQconnectPoll);
    CONNLEAK_PQ(PQsetNoticeProcessor);
    CONNLEAK_PQ(PQstatus);
    CONNLEAK_PQ(PQsocket);
    CONNLEAK_PQ(PQerrorMessage);
    CONNLEAK_PQ(PQfinish);
    CONNLEAK_PQ(PQsendQuery);
    CONNLEAK_PQ(PQisBusy);
    CONNLEAK_PQ(PQconsumeInput);
    CONNLEAK_PQ(PQgetResult);
    CONNLEAK_PQ(PQresultStatus);
    CONNLEAK_PQ(PQresultErrorMessage);
    CONNLEAK_PQ(PQntuples);
    CONNLEAK_PQ(PQgetisnull);
    CONNLEAK_PQ(PQgetvalue);
    CONNLEAK_PQ(PQclear);
#undef CONNLEAK_PQ
    if (!missing.empty()) {
        dlclose(lib);
        return Error{"cannot use libpq " + file + " (it has no " + missing + ")"};
    }
    return static_cast<const LibpqApi*>(&api);
}

}  // namespace

const Result<const LibpqApi*>& libpq_api()
{
    static const Result<const LibpqApi*> loaded = load();  // thread-safe once
    return loaded;
}

}  // namespace connleak
