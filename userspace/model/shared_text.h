// Text that many rows repeat (a site's name, a database, a peer): one copy,
// and in each row a counted reference to it instead of a string of its own.
// A report holds a row per live handle (100,000 at scale), and a row's
// strings were most of its memory and of the time to make it.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <map>
#include <string>
#include <string_view>

namespace connleak {

class SharedText {
public:
    SharedText() = default;
    SharedText(std::string text)  // NOLINT: a row's field is assigned text as before
            : body_(text.empty() ? nullptr : new Body{{1}, std::move(text)})
    {}
    SharedText(const char* text) : SharedText(std::string(text)) {}  // NOLINT: as above
    SharedText(const SharedText& o) noexcept : body_(o.body_) { hold(); }
    SharedText(SharedText&& o) noexcept : body_(o.body_) { o.body_ = nullptr; }
    SharedText& operator=(const SharedText& o) noexcept
    {
        if (body_ != o.body_) {
            o.hold();
            drop();
            body_ = o.body_;
        }
        return *this;
    }
    SharedText& operator=(SharedText&& o) noexcept
    {
        if (this != &o) {
            drop();
            body_ = o.body_;
            o.body_ = nullptr;
        }
        return *this;
    }
    ~SharedText() { drop(); }

    const std::string& str() const { return body_ ? body_->text : empty_text(); }
    operator const std::string&() const { return str(); }  // NOLINT: read where a string was
    operator std::string_view() const { return str(); }    // NOLINT: as above
    bool empty() const { return !body_; }
    size_t size() const { return str().size(); }
    const char* c_str() const { return str().c_str(); }
    void clear()
    {
        drop();
        body_ = nullptr;
    }

    friend bool operator==(const SharedText& a, const SharedText& b) { return a.body_ == b.body_ || a.str() == b.str(); }
    friend bool operator!=(const SharedText& a, const SharedText& b) { return !(a == b); }
    friend bool operator<(const SharedText& a, const SharedText& b) { return a.str() < b.str(); }
    friend bool operator==(const SharedText& a, const std::string& b) { return a.str() == b; }
    friend bool operator==(const std::string& a, const SharedText& b) { return a == b.str(); }
    friend bool operator!=(const SharedText& a, const std::string& b) { return a.str() != b; }
    friend bool operator!=(const std::string& a, const SharedText& b) { return a != b.str(); }
    friend bool operator==(const SharedText& a, const char* b) { return a.str() == b; }
    friend bool operator!=(const SharedText& a, const char* b) { return a.str() != b; }

private:
    // One pointer, the count beside the text (a shared_ptr is two pointers:
    // 16 bytes in every row, record and socket that holds one, 100,000s at
    // scale). Counted atomically: copies cross threads like shared_ptr's.
    struct Body {
        std::atomic<long> refs;
        const std::string text;
    };
    void hold() const
    {
        if (body_)
            body_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    void drop()
    {
        if (body_ && body_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
            delete body_;
    }
    static const std::string& empty_text()
    {
        static const std::string empty;
        return empty;
    }
    Body* body_ = nullptr;
};

// One SharedText per distinct text, for the texts a report repeats.
// Consecutive rows mostly repeat the previous text: compared first.
class TextPool {
public:
    SharedText get(const std::string& text)
    {
        if (text.empty())
            return {};
        if (!last_.empty() && last_.str() == text)
            return last_;
        auto it = texts_.find(text);
        if (it == texts_.end())
            it = texts_.emplace(text, SharedText(text)).first;
        last_ = it->second;
        return last_;
    }

private:
    std::map<std::string, SharedText, std::less<>> texts_;
    SharedText last_;
};

}  // namespace connleak
