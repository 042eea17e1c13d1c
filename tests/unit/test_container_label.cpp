// Container labels from real /proc/PID/cgroup lines (docker, containerd,
// CRI-O, podman, Kubernetes with the cgroupfs and systemd drivers, cgroup
// v1, v2 and hybrid hosts).
#include <catch2/catch.hpp>

#include "container_label.h"
#include "process_tree.h"

using namespace connleak;

namespace {

const std::string kId = "3f4b2d0a9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
const std::string kPod = "8d3f6c2e-1a2b-4c5d-9e8f-0a1b2c3d4e5f";
const std::string kPodUnderscores = "8d3f6c2e_1a2b_4c5d_9e8f_0a1b2c3d4e5f";

}  // namespace

TEST_CASE("a process outside any container has no label")
{
    CHECK(parse_cgroup_label("0::/user.slice/user-0.slice/session-3.scope\n").empty());
    CHECK(parse_cgroup_label("0::/system.slice/postgresql@15-main.service\n").empty());
    CHECK(parse_cgroup_label("0::/\n").empty());
    CHECK(parse_cgroup_label("").empty());
    CHECK(parse_cgroup_label("garbage without colons\n").empty());
}

TEST_CASE("docker on cgroup v2 with the systemd driver")
{
    const auto l = parse_cgroup_label("0::/system.slice/docker-" + kId + ".scope\n");
    CHECK(l.id == kId);
    CHECK(l.pod_uid.empty());
}

TEST_CASE("docker with the cgroupfs driver, cgroup v1")
{
    const std::string text =
        "12:pids:/docker/" + kId + "\n11:memory:/docker/" + kId + "\n1:name=systemd:/docker/" + kId + "\n0::/\n";
    const auto l = parse_cgroup_label(text);
    CHECK(l.id == kId);
    CHECK(l.pod_uid.empty());
}

TEST_CASE("hybrid host: an empty unified line, v1 lines name the container")
{
    const auto l = parse_cgroup_label("5:cpuset:/docker/" + kId + "\n0::/\n");
    CHECK(l.id == kId);
}

TEST_CASE("podman and CRI-O scopes; CRI-O's conmon is not the container")
{
    CHECK(parse_cgroup_label("0::/machine.slice/libpod-" + kId + ".scope/container\n").id == kId);
    CHECK(parse_cgroup_label("0::/machine.slice/crio-" + kId + ".scope\n").id == kId);
    CHECK(parse_cgroup_label("0::/machine.slice/crio-conmon-" + kId + ".scope\n").empty());
}

TEST_CASE("Kubernetes, cgroupfs driver (containerd), cgroup v1: pod UID and container")
{
    const std::string text = "11:cpu,cpuacct:/kubepods/burstable/pod" + kPod + "/" + kId + "\n" +
                             "10:memory:/kubepods/burstable/pod" + kPod + "/" + kId + "\n";
    const auto l = parse_cgroup_label(text);
    CHECK(l.id == kId);
    CHECK(l.pod_uid == kPod);
}

TEST_CASE("Kubernetes, systemd driver, containerd on cgroup v2")
{
    const std::string text = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kPodUnderscores +
                             ".slice/cri-containerd-" + kId + ".scope\n";
    const auto l = parse_cgroup_label(text);
    CHECK(l.id == kId);
    CHECK(l.pod_uid == kPod);
}

TEST_CASE("Kubernetes, systemd driver, CRI-O, guaranteed QoS (no QoS slice)")
{
    const std::string text = "0::/kubepods.slice/kubepods-pod" + kPodUnderscores + ".slice/crio-" + kId + ".scope\n";
    const auto l = parse_cgroup_label(text);
    CHECK(l.id == kId);
    CHECK(l.pod_uid == kPod);
}

TEST_CASE("a pod's cgroup without a container segment gives the pod alone")
{
    const auto l = parse_cgroup_label("0::/kubepods/besteffort/pod" + kPod + "\n");
    CHECK(l.id.empty());
    CHECK(l.pod_uid == kPod);
}

TEST_CASE("nested containers: the innermost ID wins")
{
    const std::string inner(64, 'b');
    const auto l = parse_cgroup_label("0::/system.slice/docker-" + kId + ".scope/docker/" + inner + "\n");
    CHECK(l.id == inner);
}

TEST_CASE("near misses are not IDs: wrong length, upper case, a 'pod' inside a word")
{
    CHECK(parse_cgroup_label("0::/docker/" + kId.substr(1) + "\n").empty());
    std::string upper = kId;
    upper[0] = 'A';
    CHECK(parse_cgroup_label("0::/docker/" + upper + "\n").empty());
    CHECK(parse_cgroup_label("0::/system.slice/ipod" + kPod + ".service\n").empty());
    CHECK(parse_cgroup_label("0::/kubepods/pod1234\n").empty());
}

TEST_CASE("the parent pid is read after the last ')' of /proc/PID/stat")
{
    CHECK(parse_stat_ppid("1234 (gunicorn) S 1 1234 1234 0 -1") == 1u);
    CHECK(parse_stat_ppid("77 (a) b) (c) R 42 77 77 0") == 42u);
    CHECK(parse_stat_ppid("77 (x) S") == std::nullopt);
    CHECK(parse_stat_ppid("no parenthesis 1 2") == std::nullopt);
}

TEST_CASE("descendants: children, grandchildren, not the root, no loops")
{
    const std::map<uint32_t, uint32_t> parents = {{1, 0},   {10, 1}, {11, 10}, {12, 10},
                                                  {13, 11}, {20, 1}, {30, 31}, {31, 30}};
    CHECK(descendants_in(parents, {10}) == std::vector<uint32_t>{11, 12, 13});
    CHECK(descendants_in(parents, {13}).empty());
    CHECK(descendants_in(parents, {11, 20}) == std::vector<uint32_t>{13});
    CHECK(descendants_in(parents, {30}) == std::vector<uint32_t>{31});
}
