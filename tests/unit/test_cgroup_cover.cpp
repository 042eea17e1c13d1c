// Where the TCP sock_ops program is attached without --all (cgroup_cover.h,
// process_cgroup.h): once per process set, never twice over one socket.
#include <catch2/catch.hpp>

#include "cgroup_cover.h"
#include "process_cgroup.h"

using namespace connleak;
using Paths = std::vector<std::string>;

TEST_CASE("cgroup2_path takes the cgroup v2 line of /proc/PID/cgroup")
{
    CHECK(cgroup2_path("0::/system.slice/ssh.service\n") == "/system.slice/ssh.service");
    CHECK(cgroup2_path("12:cpu,cpuacct:/x\n1:name=systemd:/y\n0::/user.slice/a b\n") == "/user.slice/a b");
    CHECK(cgroup2_path("0::/\n") == "/");
    CHECK(cgroup2_path("12:cpu:/x\n") == "");  // cgroup v1 only
    CHECK(cgroup2_path("") == "");
    CHECK(cgroup2_path("0::/gone (deleted)\n") == "");  // removed under it
}

TEST_CASE("CgroupCover: a directory under an attached one is covered")
{
    CgroupCover c;
    auto s = c.plan("/a/b");
    CHECK_FALSE(s.covered);
    CHECK(s.drop.empty());
    c.attached("/a/b", s.drop);
    CHECK(c.plan("/a/b").covered);
    CHECK(c.plan("/a/b/c").covered);
    CHECK_FALSE(c.plan("/a/bc").covered);  // a sibling whose name starts alike
    CHECK_FALSE(c.plan("/a").covered);
    CHECK(c.paths() == Paths{"/a/b"});
}

TEST_CASE("CgroupCover: an ancestor of attached directories replaces them")
{
    CgroupCover c;
    c.attached("/a/b", {});
    c.attached("/a/c/d", {});
    c.attached("/e", {});
    auto s = c.plan("/a");
    CHECK_FALSE(s.covered);
    CHECK(s.drop == Paths{"/a/b", "/a/c/d"});
    c.attached("/a", s.drop);
    CHECK(c.paths() == Paths{"/e", "/a"});
    auto root = c.plan("/");
    CHECK(root.drop == Paths{"/e", "/a"});
    c.attached("/", root.drop);
    CHECK(c.paths() == Paths{"/"});
    CHECK(c.plan("/x/y").covered);
}
