// The kernel's tick rate (kernel_hz.h).
#include "kernel_hz.h"

#include <fstream>
#include <sstream>
#include <string>
#include <sys/utsname.h>
#include <zlib.h>

namespace connleak {

unsigned config_hz(std::string_view config)
{
    constexpr std::string_view key = "CONFIG_HZ=";
    size_t at = 0;
    while ((at = config.find(key, at)) != std::string_view::npos) {
        const bool line_start = at == 0 || config[at - 1] == '\n';
        at += key.size();
        if (!line_start)
            continue;
        unsigned hz = 0;
        size_t i = at;
        for (; i < config.size() && config[i] >= '0' && config[i] <= '9' && hz < 100000; i++)
            hz = hz * 10 + static_cast<unsigned>(config[i] - '0');
        const bool line_end = i == config.size() || config[i] == '\n';
        return i > at && line_end ? hz : 0;
    }
    return 0;
}

namespace {

std::string gunzip_file(const char* path)
{
    std::string out;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return out;
    char buf[65536];
    int n;
    while ((n = gzread(f, buf, sizeof(buf))) > 0)
        out.append(buf, static_cast<size_t>(n));
    gzclose(f);
    return out;
}

}  // namespace

unsigned kernel_hz()
{
    if (unsigned hz = config_hz(gunzip_file("/proc/config.gz")))
        return hz;
    utsname u{};
    if (uname(&u) != 0)
        return 0;
    std::ifstream f(std::string("/boot/config-") + u.release);
    std::stringstream text;
    text << f.rdbuf();
    return config_hz(text.str());
}

}  // namespace connleak
