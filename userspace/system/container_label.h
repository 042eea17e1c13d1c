// Which container a process runs in, from its cgroup path: the container
// ID (docker, containerd, CRI-O, podman) and the Kubernetes pod UID when the
// path holds one.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "model.h"

namespace connleak {

struct ContainerLabel {
    std::string id;       // 64 hex digits; "" when none
    std::string pod_uid;  // "8d3f...-..." as Kubernetes writes it; "" when none
    bool empty() const { return id.empty() && pod_uid.empty(); }
    bool operator==(const ContainerLabel& o) const { return id == o.id && pod_uid == o.pod_uid; }
};

// Parses the text of /proc/PID/cgroup (cgroup v1 or v2 lines,
// "hierarchy:controllers:path"). The unified (v2) line is preferred when it
// names a container or pod, then the first v1 line that does; within a path the innermost
// container segment wins (a container nested in a container).
ContainerLabel parse_cgroup_label(const std::string& cgroup_text);

// /proc/PID/cgroup, parsed; empty when unreadable.
ContainerLabel read_container_label(uint32_t pid);

// Labels the processes of each report: read once per process while it
// runs, kept while the report lists it (an exited process's cgroup file is
// gone).
class ContainerLabels {
public:
    void label(RawState& raw);

private:
    std::map<uint32_t, ContainerLabel> by_pid_;
};

}  // namespace connleak
