// Errors carried as values with context, not exceptions, so every failure
// reaches main() as one line a person can act on.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace connleak {

struct Error {
    std::string message;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error err) : v_(std::move(err)) {}

    bool ok() const { return std::holds_alternative<T>(v_); }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<T>(v_); }
    const T& value() const { return std::get<T>(v_); }
    T* operator->() { return &value(); }
    const Error& error() const { return std::get<Error>(v_); }

private:
    std::variant<T, Error> v_;
};

// For operations that return nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

// strerror of an errno or of a negative libbpf return.
inline std::string errstr(int err)
{
    return std::strerror(err < 0 ? -err : err);
}

}  // namespace connleak
