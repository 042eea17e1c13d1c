// A helper thread that starts with every signal blocked, from its first
// instruction (a thread inherits the creating thread's mask): SIGINT and
// SIGTERM belong to the main thread's signalfd, and one delivered to a
// helper thread would kill connleak mid-report.
#pragma once

#include <csignal>
#include <pthread.h>
#include <thread>
#include <utility>

namespace connleak {

template <typename F>
std::thread thread_without_signals(F&& body)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    std::thread t(std::forward<F>(body));
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return t;
}

}  // namespace connleak
