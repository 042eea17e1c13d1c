// Without libFuzzer: feeds every file named on the command line (or in the
// directories named) to LLVMFuzzerTestOneInput once, so the ordinary and
// sanitizer builds replay the committed corpus as a test.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int replay_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
        return 1;
    }
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A heap copy of the exact size, as libFuzzer gives: reads past the
    // end are caught by ASan.
    auto* copy = new uint8_t[bytes.size()];
    std::copy(bytes.begin(), bytes.end(), copy);
    LLVMFuzzerTestOneInput(copy, bytes.size());
    delete[] copy;
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    int files = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            std::fprintf(stderr, "replay: no such file %s\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed += replay_file(argv[i]);
            files++;
            continue;
        }
        DIR* d = opendir(argv[i]);
        if (!d)
            return 1;
        while (dirent* e = readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            failed += replay_file(std::string(argv[i]) + "/" + e->d_name);
            files++;
        }
        closedir(d);
    }
    std::printf("replay: %d inputs, %d unreadable\n", files, failed);
    return failed || files == 0 ? 1 : 0;
}
