#include "atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace connleak {
namespace {

std::string failure(const std::string& what, const std::string& path)
{
    return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string write_file_atomically(const std::string& path, const std::string& content)
{
    std::string tmp = path + ".tmp.XXXXXX";
    int fd = mkstemp(tmp.data());
    if (fd < 0)
        return failure("create a temporary file for", path);
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            std::string err = failure("write", tmp);
            close(fd);
            unlink(tmp.c_str());
            return err;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    // mkstemp makes 0600; a snapshot is meant to be read by dashboards.
    fchmod(fd, 0644);
    if (close(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
        std::string err = failure("replace", path);
        unlink(tmp.c_str());
        return err;
    }
    return "";
}

std::string check_writable(const std::string& path)
{
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return "cannot write " + path + ": it is a directory";
    std::string tmp = path + ".tmp.XXXXXX";
    int fd = mkstemp(tmp.data());
    if (fd < 0)
        return failure("write", path);
    close(fd);
    unlink(tmp.c_str());
    return "";
}

}  // namespace connleak
