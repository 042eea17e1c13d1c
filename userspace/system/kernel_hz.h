// The kernel's tick rate (CONFIG_HZ): TCP keeps the time of a socket's last
// received data in jiffies (icsk_ack.lrcvtime), which the sock_ops path of
// the traffic hooks turns into nanoseconds (bpf/sock_io.bpf.h).
#pragma once

#include <string_view>

namespace connleak {

// CONFIG_HZ from a kernel configuration text ("CONFIG_HZ=250"); 0 if absent.
unsigned config_hz(std::string_view config);

// This kernel's CONFIG_HZ, from /proc/config.gz or /boot/config-RELEASE;
// 0 when neither says.
unsigned kernel_hz();

}  // namespace connleak
