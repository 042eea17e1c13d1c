// Handle fields read with process_vm_readv, here from this process's own
// memory: many handles in one call, each failing alone.
#include <catch2/catch.hpp>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "handle_reader.h"

using namespace connleak;

namespace {

// A stand-in for a PGconn: the four fields at the layout's offsets.
struct FakeConn {
    char before[40];
    int32_t status;
    char gap1[12];
    int32_t async_status;
    int32_t xact_status;
    char gap2[100];
    int32_t be_pid;
    char after[20];
};

LibpqLayout fake_layout()
{
    LibpqLayout l;
    l.status = offsetof(FakeConn, status);
    l.async_status = offsetof(FakeConn, async_status);
    l.xact_status = offsetof(FakeConn, xact_status);
    l.be_pid = offsetof(FakeConn, be_pid);
    return l;
}

}  // namespace

TEST_CASE("read_handles_fields: every handle's fields, each unreadable one failing alone", "[handles]")
{
    const uint32_t self = static_cast<uint32_t>(getpid());
    // A page no one can read, kept mapped (PROT_NONE) for the whole test: a
    // hole unmapped at once was reused by the test's own later allocations
    // in the sanitizer build (a fresh clone's make test read "bad" handles).
    void* hole = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(hole != MAP_FAILED);
    struct Unmap {
        void* p;
        ~Unmap() { munmap(p, 4096); }
    } keep_hole{hole};
    const uint64_t bad = reinterpret_cast<uintptr_t>(hole);

    for (LibpqLayout layout : {fake_layout(), [] {
                                   LibpqLayout far =
                                       fake_layout();  // fields too far apart for one span: four iovecs each
                                   far.be_pid += 4096;
                                   return far;
                               }()}) {
        const bool far = layout.be_pid > 4096;
        // 600 handles: more than one call's worth.
        std::vector<FakeConn> handles(600);
        std::vector<std::vector<int32_t>> far_pids(handles.size(), std::vector<int32_t>(2048));
        std::vector<uint64_t> addresses;
        for (size_t i = 0; i < handles.size(); i++) {
            std::memset(&handles[i], 0x55, sizeof(FakeConn));
            handles[i].status = static_cast<int32_t>(i);
            handles[i].async_status = static_cast<int32_t>(i + 1);
            handles[i].xact_status = static_cast<int32_t>(i + 2);
            handles[i].be_pid = static_cast<int32_t>(i + 3);
            addresses.push_back(reinterpret_cast<uintptr_t>(&handles[i]));
        }
        if (far) {  // the handles are then read from far_pids' memory, be_pid 4 KiB on
            for (size_t i = 0; i < handles.size(); i++) {
                auto* base = reinterpret_cast<unsigned char*>(far_pids[i].data());
                std::memcpy(base, &handles[i], sizeof(FakeConn));
                const int32_t pid = static_cast<int32_t>(i + 3);
                std::memcpy(base + layout.be_pid, &pid, 4);
                addresses[i] = reinterpret_cast<uintptr_t>(base);
            }
        }
        addresses[0] = bad;
        addresses[300] = bad;
        addresses[599] = bad;
        const auto read = read_handles_fields(self, addresses, layout);
        REQUIRE(read.size() == addresses.size());
        for (size_t i = 0; i < read.size(); i++) {
            INFO("handle " << i << (far ? " (far)" : ""));
            if (addresses[i] == bad) {
                CHECK(!read[i]);
                continue;
            }
            REQUIRE(read[i]);
            CHECK(read[i].value().status == static_cast<int32_t>(i));
            CHECK(read[i].value().async_status == static_cast<int32_t>(i + 1));
            CHECK(read[i].value().xact_status == static_cast<int32_t>(i + 2));
            CHECK(read[i].value().be_pid == static_cast<int32_t>(i + 3));
        }
    }
}
