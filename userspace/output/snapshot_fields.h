// Reading the version-1 snapshot JSON back (the HTTP formats are built from
// it, so keys other parts add flow into them): counts that may be absent.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace connleak {

// A non-negative integer at `key`, else 0 (absent, null, negative, not a number).
inline uint64_t json_count(const nlohmann::ordered_json& j, const char* key)
{
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
        return 0;
    return it->get<uint64_t>();
}

// A string at `key`, else "".
inline std::string json_text(const nlohmann::ordered_json& j, const char* key)
{
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A number at `key`, else 0.
inline double json_number(const nlohmann::ordered_json& j, const char* key)
{
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

// A signed integer at `key`, else 0.
inline int64_t json_int(const nlohmann::ordered_json& j, const char* key)
{
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The array (or object) at `key` without copying it; an empty one if absent.
inline const nlohmann::ordered_json& json_list(const nlohmann::ordered_json& j, const char* key)
{
    static const nlohmann::ordered_json empty = nlohmann::ordered_json::array();
    auto it = j.find(key);
    return it != j.end() && (it->is_array() || it->is_object()) ? *it : empty;
}

}  // namespace connleak
