// Replacing a file so readers see the old or the new content, never half.
#pragma once

#include <string>

namespace connleak {

// Writes `content` to a temporary file beside `path`, then renames it over
// `path`. Only a regular file (or nothing) is ever replaced: a directory,
// symbolic link, device node, FIFO or socket at `path` is an error. The new
// file gets mode 0666 less the umask. Returns "" on success, else a message
// naming the path and reason; on failure nothing is left behind.
std::string write_file_atomically(const std::string& path, const std::string& content);

// Checks that `path` can be written that way, leaving nothing behind.
std::string check_writable(const std::string& path);

}  // namespace connleak
