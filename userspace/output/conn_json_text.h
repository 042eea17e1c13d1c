// One entry of processes[].connections[] written straight as text: the
// bytes nlohmann's dump(2) gives for the same object (conn_json with its
// handle keys), without building the object. At 100,000 listed connections
// the tree of objects cost most of a report's time and memory.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "model.h"

namespace connleak {

// `s` as a JSON string, quotes included, escaped as nlohmann escapes valid
// UTF-8 (control characters as \b \f \n \r \t or \u00xx, the rest as is).
void append_json_string(std::string& out, std::string_view s);

// The connection as a JSON object whose closing brace is `indent` spaces
// in (its keys two more), as it reads inside a document dumped with indent 2.
void append_conn_json(std::string& out, const ConnReport& c, bool sockets_tracked, size_t indent);

// The same for many connections: the handles of a site share its name (and
// mostly their database and user), so the escaped text of the one before is kept.
class ConnJsonWriter {
public:
    void append(std::string& out, const ConnReport& c, bool sockets_tracked, size_t indent);

private:
    static const std::string& quoted(std::string& cache_key, std::string& cache, const std::string& s);
    std::string site_, site_json_, last_used_, last_used_json_, database_, database_json_, user_, user_json_;
};

}  // namespace connleak
