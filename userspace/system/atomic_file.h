// Replacing a file so readers see the old or the new content, never half.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace connleak {

// Writes `content` to a temporary file beside `path`, then renames it over
// `path`. Only a regular file (or nothing) is ever replaced: a directory,
// symbolic link, device node, FIFO or socket at `path` is an error. The new
// file gets mode 0666 less the umask. Returns "" on success, else a message
// naming the path and reason; on failure nothing is left behind.
std::string write_file_atomically(const std::string& path, const std::string& content);

// The same, with the content made in pieces: `produce` hands each to `put`
// in order, so a large document (a snapshot of 100,000 connections) need
// not be in memory whole. After a failed write the rest is not written.
using PieceWriter = std::function<void(std::string_view piece)>;
std::string write_file_atomically(const std::string& path, const std::function<void(const PieceWriter& put)>& produce);

// Checks that `path` can be written that way, leaving nothing behind.
std::string check_writable(const std::string& path);

}  // namespace connleak
