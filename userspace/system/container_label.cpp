#include "container_label.h"

#include <fstream>
#include <sstream>
#include <vector>

namespace connleak {
namespace {

bool all_hex(const std::string& s)
{
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

bool ends_with(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>.scope",
// "libpod-<id>.scope" (systemd driver) or a bare "<id>" (cgroupfs driver).
std::string container_id_of(std::string segment)
{
    if (ends_with(segment, ".scope"))
        segment.resize(segment.size() - 6);
    // CRI-O's monitor of a container runs beside it, not in it.
    if (segment.rfind("crio-conmon-", 0) == 0)
        return "";
    const size_t dash = segment.rfind('-');
    const std::string tail = dash == std::string::npos ? segment : segment.substr(dash + 1);
    return tail.size() == 64 && all_hex(tail) ? tail : "";
}

// "pod<uid>" (cgroupfs) or "kubepods-<qos>-pod<uid, '_' for '-'>.slice"
// (systemd driver).
std::string pod_uid_of(std::string segment)
{
    if (ends_with(segment, ".slice"))
        segment.resize(segment.size() - 6);
    const size_t pod = segment.rfind("pod");
    if (pod == std::string::npos || (pod != 0 && segment[pod - 1] != '-'))
        return "";
    std::string uid = segment.substr(pod + 3);
    for (char& c : uid)
        if (c == '_')
            c = '-';
    if (uid.size() != 36)
        return "";
    for (size_t i = 0; i < uid.size(); i++) {
        const bool dash_place = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash_place ? uid[i] != '-' : !all_hex(std::string(1, uid[i])))
            return "";
    }
    return uid;
}

ContainerLabel label_of_path(const std::string& path)
{
    ContainerLabel label;
    std::istringstream segments(path);
    std::string segment;
    while (std::getline(segments, segment, '/')) {
        if (std::string id = container_id_of(segment); !id.empty())
            label.id = id;  // the innermost wins
        if (std::string uid = pod_uid_of(segment); !uid.empty())
            label.pod_uid = uid;
    }
    return label;
}

}  // namespace

ContainerLabel parse_cgroup_label(const std::string& cgroup_text)
{
    ContainerLabel first_v1;
    std::istringstream lines(cgroup_text);
    std::string line;
    while (std::getline(lines, line)) {
        const size_t a = line.find(':');
        const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos)
            continue;
        ContainerLabel label = label_of_path(line.substr(b + 1));
        // The unified hierarchy is the kernel's own view; on a hybrid host
        // its path may say nothing, and a v1 line names the container.
        if (line.compare(0, b + 1, "0::") == 0 && !label.empty())
            return label;
        if (first_v1.empty())
            first_v1 = label;
    }
    return first_v1;
}

ContainerLabel read_container_label(uint32_t pid)
{
    std::ifstream f("/proc/" + std::to_string(pid) + "/cgroup");
    std::stringstream text;
    text << f.rdbuf();
    return parse_cgroup_label(text.str());
}

void ContainerLabels::label(RawState& raw)
{
    std::map<uint32_t, ContainerLabel> now;
    for (RawProcess& p : raw.processes) {
        auto it = by_pid_.find(p.pid);
        const ContainerLabel l = it != by_pid_.end() ? it->second : read_container_label(p.pid);
        p.container_id = l.id;
        p.pod_uid = l.pod_uid;
        now.emplace(p.pid, l);
    }
    by_pid_.swap(now);
}

}  // namespace connleak
