#include "atomic_file.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace connleak {
namespace {

constexpr const char* kTemporaryInfix = ".tmp.";
constexpr size_t kRandomChars = 6;

std::string failure(const std::string& what, const std::string& path)
{
    return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

// "" when path names nothing yet or a regular file; else why it must not be
// replaced. lstat: a device node, FIFO or socket is never swapped for a
// regular file, and a symbolic link is refused rather than followed (connleak
// runs as root: a link planted in a shared directory must not redirect its
// writes) or silently replaced by a file.
std::string replaceable(const std::string& path)
{
    if (!path.empty() && path.back() == '/')
        return "cannot write " + path + ": it names a directory";
    struct stat st;
    if (lstat(path.c_str(), &st) != 0)
        return errno == ENOENT ? "" : failure("write", path);
    if (S_ISREG(st.st_mode))
        return "";
    if (S_ISDIR(st.st_mode))
        return "cannot write " + path + ": it is a directory";
    if (S_ISLNK(st.st_mode))
        return "cannot write " + path +
               ": it is a symbolic link (connleak replaces only regular files; "
               "name the file it points to)";
    return "cannot write " + path + ": not a regular file (connleak replaces the file with each snapshot)";
}

// Creates "<name>.tmp.XXXXXX" beside path, exclusively, mode 0666 less the
// umask (mkstemp would make 0600 and leave the umask to guess). The name is
// shortened so the temporary fits NAME_MAX wherever path itself does.
// Returns the descriptor (tmp set) or -1 with errno.
int create_temporary(const std::string& path, std::string& tmp)
{
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    const size_t suffix = std::strlen(kTemporaryInfix) + kRandomChars;
    if (name.size() + suffix > NAME_MAX)
        name.resize(NAME_MAX - suffix);
    static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char random[kRandomChars];
        if (getrandom(random, sizeof(random), 0) != static_cast<ssize_t>(sizeof(random)))
            return -1;
        tmp = dir + name + kTemporaryInfix;
        for (unsigned char r : random)
            tmp += kAlphabet[r % (sizeof(kAlphabet) - 1)];
        int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

}  // namespace

std::string write_file_atomically(const std::string& path, const std::string& content)
{
    return write_file_atomically(path, [&](const PieceWriter& put) { put(content); });
}

std::string write_file_atomically(const std::string& path, const std::function<void(const PieceWriter& put)>& produce)
{
    if (std::string err = replaceable(path); !err.empty())
        return err;
    std::string tmp;
    int fd = create_temporary(path, tmp);
    if (fd < 0)
        return failure("create a temporary file for", path);
    std::string write_error;
    produce([&](std::string_view piece) {
        const char* p = piece.data();
        size_t left = piece.size();
        while (left > 0 && write_error.empty()) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                write_error = failure("write", tmp);
                break;
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
    });
    if (!write_error.empty()) {
        close(fd);
        unlink(tmp.c_str());
        return write_error;
    }
    if (close(fd) != 0) {
        std::string err = failure("write", tmp);
        unlink(tmp.c_str());
        return err;
    }
    // Checked again: what path names may have changed since the last write.
    if (std::string err = replaceable(path); !err.empty()) {
        unlink(tmp.c_str());
        return err;
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        std::string err = failure("replace", path);
        unlink(tmp.c_str());
        return err;
    }
    return "";
}

std::string check_writable(const std::string& path)
{
    if (std::string err = replaceable(path); !err.empty())
        return err;
    std::string tmp;
    int fd = create_temporary(path, tmp);
    if (fd < 0)
        return failure("write", path);
    close(fd);
    unlink(tmp.c_str());
    return "";
}

}  // namespace connleak
