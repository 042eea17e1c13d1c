// A JSON object written straight as text, in the bytes nlohmann's dump(2)
// gives for it (keys in the order written): the snapshot's big parts are
// written this way rather than built as trees and dumped (issue 16: 1,000
// process entries and 100,000 connections at scale).
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "model.h"
#include "safe_text.h"

#include "conn_json_text.h"

namespace connleak {

// The object's opening brace now, its closing brace (`indent` spaces in, its
// keys two more) when it goes out of scope; a non-empty object only (an
// empty one is "{}").
class ObjectText {
public:
    ObjectText(std::string& out, size_t indent) : out_(out), indent_(indent) { out_ += '{'; }
    ~ObjectText()
    {
        out_ += '\n';
        out_.append(indent_, ' ');
        out_ += '}';
    }
    std::string& key(std::string_view k)
    {
        // One append, not five: 100,000 connections of 16 keys at scale.
        char buf[128];
        const size_t spaces = indent_ + 2;
        if (spaces + k.size() + 6 > sizeof(buf)) {
            out_ += first_ ? "\n" : ",\n";
            out_.append(spaces, ' ');
            out_ += '"';
            out_ += k;
            out_ += "\": ";
        } else {
            size_t n = 0;
            if (!first_)
                buf[n++] = ',';
            buf[n++] = '\n';
            std::memset(buf + n, ' ', spaces);
            n += spaces;
            buf[n++] = '"';
            std::memcpy(buf + n, k.data(), k.size());  // connleak's own keys: nothing to escape
            n += k.size();
            std::memcpy(buf + n, "\": ", 3);
            out_.append(buf, n + 3);
        }
        first_ = false;
        return out_;
    }
    void null(std::string_view k) { key(k) += "null"; }
    void boolean(std::string_view k, bool b) { key(k) += b ? "true" : "false"; }
    void count(std::string_view k, uint64_t n)
    {
        char buf[24];
        const auto end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
        key(k).append(buf, static_cast<size_t>(end - buf));
    }
    void number(std::string_view k, int64_t n)
    {
        char buf[24];
        const auto end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
        key(k).append(buf, static_cast<size_t>(end - buf));
    }
    // As nlohmann's serializer writes a double (its own Grisu2 conversion).
    void number(std::string_view k, double d)
    {
        std::string& out = key(k);
        if (!std::isfinite(d)) {
            out += "null";
            return;
        }
        std::array<char, 64> buf{};
        const char* end = nlohmann::detail::to_chars(buf.data(), buf.data() + buf.size(), d);
        out.append(buf.data(), static_cast<size_t>(end - buf.data()));
    }
    // Text already escaped and quoted.
    void json_text(std::string_view k, std::string_view quoted) { key(k) += quoted; }
    void text(std::string_view k, std::string_view s) { append_json_string(key(k), s); }
    // A key that is text from outside (a peer's address): escaped.
    std::string& text_key(std::string_view k)
    {
        out_ += first_ ? "\n" : ",\n";
        first_ = false;
        out_.append(indent_ + 2, ' ');
        append_json_string(out_, k);
        out_ += ": ";
        return out_;
    }
    void text_or_null(std::string_view k, bool present, std::string_view s)
    {
        if (present)
            text(k, s);
        else
            null(k);
    }

private:
    std::string& out_;
    size_t indent_;
    bool first_ = true;
};

// An array whose elements each `write(item, indent of the element)`.
template <class Items, class Write>
void append_array(std::string& out, const Items& items, size_t indent, Write write)
{
    if (items.empty()) {
        out += "[]";
        return;
    }
    out += '[';
    bool first = true;
    for (const auto& item : items) {
        out += first ? "\n" : ",\n";
        first = false;
        out.append(indent + 2, ' ');
        write(item, indent + 2);
    }
    out += '\n';
    out.append(indent, ' ');
    out += ']';
}

inline void append_frames(std::string& out, const Frames& frames, size_t indent)
{
    static const std::vector<std::string> none;
    append_array(out, frames ? *frames : none, indent,
                 [&](const std::string& f, size_t) { append_json_string(out, utf8_text(f)); });
}

inline void append_count(std::string& out, uint64_t n)
{
    char buf[24];
    const auto end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
    out.append(buf, static_cast<size_t>(end - buf));
}

}  // namespace connleak
