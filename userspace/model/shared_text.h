// Text that many rows repeat (a site's name, a database, a peer): one copy,
// and in each row a counted reference to it instead of a string of its own.
// A report holds a row per live handle (100,000 at scale), and a row's
// strings were most of its memory and of the time to make it.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace connleak {

class SharedText {
public:
    SharedText() = default;
    SharedText(std::string text)  // NOLINT: a row's field is assigned text as before
            : text_(text.empty() ? nullptr : std::make_shared<const std::string>(std::move(text)))
    {}
    SharedText(const char* text) : SharedText(std::string(text)) {}  // NOLINT: as above

    const std::string& str() const { return text_ ? *text_ : empty_text(); }
    operator const std::string&() const { return str(); }  // NOLINT: read where a string was
    operator std::string_view() const { return str(); }    // NOLINT: as above
    bool empty() const { return !text_; }
    size_t size() const { return str().size(); }
    const char* c_str() const { return str().c_str(); }
    void clear() { text_.reset(); }

    friend bool operator==(const SharedText& a, const SharedText& b) { return a.str() == b.str(); }
    friend bool operator!=(const SharedText& a, const SharedText& b) { return !(a == b); }
    friend bool operator<(const SharedText& a, const SharedText& b) { return a.str() < b.str(); }
    friend bool operator==(const SharedText& a, const std::string& b) { return a.str() == b; }
    friend bool operator==(const std::string& a, const SharedText& b) { return a == b.str(); }
    friend bool operator!=(const SharedText& a, const std::string& b) { return a.str() != b; }
    friend bool operator!=(const std::string& a, const SharedText& b) { return a != b.str(); }
    friend bool operator==(const SharedText& a, const char* b) { return a.str() == b; }
    friend bool operator!=(const SharedText& a, const char* b) { return a.str() != b; }

private:
    static const std::string& empty_text()
    {
        static const std::string empty;
        return empty;
    }
    std::shared_ptr<const std::string> text_;
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
