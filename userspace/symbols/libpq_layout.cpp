#include "libpq_layout.h"

#include <functional>
#include <optional>
#include <set>

#include "accessor_paths.h"

namespace connleak {
namespace {

using Value = AccessorValue;
using Assignment = std::map<Value, bool>;  // value → was zero
// The value an accessor must return under one assignment; a field with
// offset kLearn means "some field this wide", whose offset is learnt.
using Expect = std::function<Value(const Assignment&)>;
constexpr uint32_t kLearn = UINT32_MAX;

// libpq-fe.h's public values the accessors return.
constexpr int64_t kConnectionBad = 1, kTransActive = 1, kTransUnknown = 4;

Value learnt_field(uint8_t width)
{
    return Value::field(kLearn, width);
}

// Runs `name`'s paths under every zero/non-zero outcome of the values it
// tests (which must be exactly `tested`) and checks each result against
// `expect`. Returns the offset learnt (or 0 if none was to be learnt).
Result<uint32_t> match(const std::string& name, const std::vector<AccessorPath>& paths, const std::set<Value>& tested,
                       const Expect& expect)
{
    std::set<Value> seen;
    for (const AccessorPath& p : paths)
        for (const AccessorCondition& c : p.conditions)
            seen.insert(c.value);
    if (seen != tested)
        return Error{name + ": its branches test other values than expected"};
    const std::vector<Value> values(tested.begin(), tested.end());
    std::optional<uint32_t> learnt;
    for (uint32_t bits = 0; bits < (1u << values.size()); ++bits) {
        Assignment a;
        for (size_t i = 0; i < values.size(); ++i)
            a[values[i]] = (bits >> i) & 1;
        const AccessorPath* taken = nullptr;
        for (const AccessorPath& p : paths) {
            bool agrees = true;
            for (const AccessorCondition& c : p.conditions)
                agrees = agrees && a[c.value] == c.zero;
            if (!agrees)
                continue;
            if (taken)
                return Error{name + ": two paths for one outcome"};
            taken = &p;
        }
        if (!taken)
            return Error{name + ": no path for an outcome"};
        const Value want = expect(a);
        const Value& got = taken->result;
        if (want.kind == Value::Kind::field && want.offset == kLearn) {
            if (got.kind != Value::Kind::field || got.width != want.width || (learnt && *learnt != got.offset))
                return Error{name + ": returns " + describe(got) + " where a field was expected"};
            learnt = got.offset;
        } else if (got != want) {
            return Error{name + ": returns " + describe(got) + " where " + describe(want) + " was expected"};
        }
    }
    return learnt.value_or(0);
}

Result<std::vector<AccessorPath>> paths_of(const AccessorCode& code, const std::string& name)
{
    auto it = code.find(name);
    if (it == code.end() || it->second.empty())
        return Error{name + ": not found"};
    auto paths = accessor_paths(it->second.data(), it->second.size());
    if (!paths)
        return Error{name + ": " + paths.error().message};
    return paths;
}

// `if (!conn) return null_value; return conn->field;`
Result<uint32_t> plain_getter(const AccessorCode& code, const std::string& name, int64_t null_value, uint8_t width)
{
    auto paths = paths_of(code, name);
    if (!paths)
        return paths.error();
    const Value arg = Value::argument();
    return match(name, paths.value(), {arg},
                 [&](const Assignment& a) { return a.at(arg) ? Value::of_constant(null_value) : learnt_field(width); });
}

// The field other than `known` that `name`'s branches test.
std::optional<Value> other_tested(const std::vector<AccessorPath>& paths, const std::set<Value>& known)
{
    std::optional<Value> other;
    for (const AccessorPath& p : paths)
        for (const AccessorCondition& c : p.conditions)
            if (!known.count(c.value)) {
                if (other && *other != c.value)
                    return std::nullopt;
                other = c.value;
            }
    return other;
}

}  // namespace

const std::vector<std::string>& libpq_layout_accessors()
{
    static const std::vector<std::string> names = {
        "PQstatus", "PQtransactionStatus", "PQbackendPID", "PQsocket", "PQdb", "PQuser"};
    return names;
}

Result<LibpqLayout> derive_libpq_layout(const AccessorCode& code)
{
    LibpqLayout layout;
    const Value arg = Value::argument();

    // PQstatus: if (!conn) return CONNECTION_BAD; return conn->status;
    auto status = plain_getter(code, "PQstatus", kConnectionBad, 4);
    if (!status)
        return status.error();
    layout.status = status.value();
    const Value status_field = Value::field(layout.status, 4);

    // PQtransactionStatus: if (!conn || conn->status != CONNECTION_OK)
    // return PQTRANS_UNKNOWN; if (conn->asyncStatus != PGASYNC_IDLE) return
    // PQTRANS_ACTIVE; return conn->xactStatus;
    auto xact_paths = paths_of(code, "PQtransactionStatus");
    if (!xact_paths)
        return xact_paths.error();
    const std::optional<Value> async = other_tested(xact_paths.value(), {arg, status_field});
    if (!async || async->kind != Value::Kind::field || async->width != 4)
        return Error{"PQtransactionStatus: tests no async status field (not the code of libpq 15)"};
    auto xact = match("PQtransactionStatus", xact_paths.value(), {arg, status_field, *async}, [&](const Assignment& a) {
        if (a.at(arg) || !a.at(status_field))
            return Value::of_constant(kTransUnknown);
        if (!a.at(*async))
            return Value::of_constant(kTransActive);
        return learnt_field(4);
    });
    if (!xact)
        return xact.error();
    layout.async_status = async->offset;
    layout.xact_status = xact.value();

    // PQbackendPID: if (!conn || conn->status != CONNECTION_OK) return 0;
    // return conn->be_pid;
    auto pid_paths = paths_of(code, "PQbackendPID");
    if (!pid_paths)
        return pid_paths.error();
    auto be_pid = match("PQbackendPID", pid_paths.value(), {arg, status_field}, [&](const Assignment& a) {
        return a.at(arg) || !a.at(status_field) ? Value::of_constant(0) : learnt_field(4);
    });
    if (!be_pid)
        return be_pid.error();
    layout.be_pid = be_pid.value();

    auto db = plain_getter(code, "PQdb", 0, 8);
    if (!db)
        return db.error();
    layout.db_name = db.value();
    auto user = plain_getter(code, "PQuser", 0, 8);
    if (!user)
        return user.error();
    layout.pguser = user.value();
    // Optional: libpq 17+ returns an alternative socket first.
    if (auto sock = plain_getter(code, "PQsocket", -1, 4))
        layout.sock = sock.value();

    const std::set<uint32_t> distinct = {layout.status, layout.async_status, layout.xact_status,
                                         layout.be_pid, layout.db_name,      layout.pguser};
    if (distinct.size() != 6)
        return Error{"the accessors read overlapping fields"};
    return layout;
}

}  // namespace connleak
