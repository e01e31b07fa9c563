#include "rules/text.hpp"

#include <cstdint>
#include <cstdio>

#include <algorithm>
#include <cstdint>

namespace qunbot::rules {
namespace {

// Returns the code point at `i` and advances `i`; a malformed sequence yields 0xFFFFFFFF and
// advances one byte, so the caller can copy that byte through unchanged.
std::uint32_t next_code_point(std::string_view s, std::size_t& i)
{
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) { ++i; return b0; }
    int len = 0;
    std::uint32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0) { len = 2; cp = b0 & 0x1F; }
    else if ((b0 & 0xF0) == 0xE0) { len = 3; cp = b0 & 0x0F; }
    else if ((b0 & 0xF8) == 0xF0) { len = 4; cp = b0 & 0x07; }
    else { ++i; return 0xFFFFFFFF; }
    if (i + static_cast<std::size_t>(len) > s.size()) { ++i; return 0xFFFFFFFF; }
    for (int k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
        if ((b & 0xC0) != 0x80) { ++i; return 0xFFFFFFFF; }
        cp = (cp << 6) | (b & 0x3F);
    }
    i += static_cast<std::size_t>(len);
    return cp;
}

void append_utf8(std::uint32_t cp, std::string& out)
{
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

bool is_invisible(std::uint32_t cp)
{
    return cp == 0x00AD || cp == 0x034F || cp == 0x180E || (cp >= 0x200B && cp <= 0x200F) ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) || cp == 0xFEFF;
}

bool is_space(std::uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x00A0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

std::uint32_t fold_width_and_case(std::uint32_t cp)
{
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0;            // full-width ASCII
    else if (cp >= 0x24B6 && cp <= 0x24CF) cp = 'a' + (cp - 0x24B6); // Ⓐ..Ⓩ
    else if (cp >= 0x24D0 && cp <= 0x24E9) cp = 'a' + (cp - 0x24D0); // ⓐ..ⓩ
    if (cp >= 'A' && cp <= 'Z') cp += 'a' - 'A';
    return cp;
}

} // namespace

void normalize_into(std::string_view text, Fold fold, std::string& out)
{
    const std::size_t start = out.size();
    bool pending_space = false;
    std::size_t i = 0;
    while (i < text.size()) {
        const auto b0 = static_cast<unsigned char>(text[i]);
        // ASCII fast path: most of a message's punctuation, digits and Latin letters.
        if (b0 < 0x80) {
            ++i;
            if (is_space(b0)) { pending_space = true; continue; }
            if (pending_space && fold == Fold::regex && out.size() > start) out.push_back(' ');
            pending_space = false;
            if (fold == Fold::keyword && b0 == '+') { out += "加"; continue; }
            out.push_back(static_cast<char>(b0 >= 'A' && b0 <= 'Z' ? b0 + ('a' - 'A') : b0));
            continue;
        }
        const std::size_t at = i;
        const auto cp = next_code_point(text, i);
        if (cp == 0xFFFFFFFF) {
            if (pending_space && fold == Fold::regex && out.size() > start) out.push_back(' ');
            pending_space = false;
            out.push_back(text[at]);
            continue;
        }
        if (is_invisible(cp)) continue;
        if (is_space(cp)) { pending_space = true; continue; }
        if (pending_space && fold == Fold::regex && out.size() > start) out.push_back(' ');
        pending_space = false;
        const auto folded = fold_width_and_case(cp);
        if (fold == Fold::keyword && folded == '+') { out += "加"; continue; }
        if (folded == cp) out.append(text.substr(at, i - at));
        else append_utf8(folded, out);
    }
}

bool glob_match(std::string_view pattern, std::string_view text)
{
    // Iterative `*` / `?` matching with one backtrack point; `?` is one UTF-8 character.
    auto char_len = [](std::string_view s, std::size_t i) -> std::size_t {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return std::min(n, s.size() - i);
    };
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '?') {
            t += char_len(text, t);
            ++p;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (p < pattern.size() && pattern[p] == text[t]) {
            ++p;
            ++t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            mark += char_len(text, mark);
            t = mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

std::string normalize(std::string_view text, Fold fold)
{
    std::string out;
    out.reserve(text.size());
    normalize_into(text, fold, out);
    return out;
}

std::string text_fingerprint(std::string_view text)
{
    const auto n = normalize(text, Fold::keyword);
    if (n.empty()) return {};
    std::uint64_t h = 1469598103934665603ull;
    for (const char c : n) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

} // namespace qunbot::rules
