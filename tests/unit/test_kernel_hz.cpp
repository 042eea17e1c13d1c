// CONFIG_HZ from kernel configuration texts (kernel_hz.h): the TCP receive
// times of the traffic hooks are jiffies times nanoseconds per jiffy.
#include <catch2/catch.hpp>

#include "kernel_hz.h"

using namespace connleak;

TEST_CASE("config_hz reads CONFIG_HZ= at a line's start")
{
    CHECK(config_hz("CONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_SCHED_HRTICK=y\n") == 250);
    CHECK(config_hz("CONFIG_HZ=1000") == 1000);  // last line, no newline
    CHECK(config_hz("# CONFIG_HZ_100 is not set\nCONFIG_HZ=300\n") == 300);
}

TEST_CASE("config_hz says 0 rather than guess")
{
    CHECK(config_hz("") == 0);
    CHECK(config_hz("CONFIG_HZ_250=y\n") == 0);               // the choice, not the value
    CHECK(config_hz("# CONFIG_HZ=250 is a comment\n") == 0);  // not at the line's start
    CHECK(config_hz("CONFIG_HZ=\n") == 0);
    CHECK(config_hz("CONFIG_HZ=25x\n") == 0);
    CHECK(config_hz("XCONFIG_HZ=250\n") == 0);
}

TEST_CASE("this kernel's HZ is one Linux offers, when its configuration is readable")
{
    const unsigned hz = kernel_hz();
    if (hz)  // /proc/config.gz or /boot/config-RELEASE
        CHECK((hz == 100 || hz == 250 || hz == 300 || hz == 1000));
}
