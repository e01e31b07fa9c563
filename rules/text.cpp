#include "rules/text.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

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
    // Overlong forms and values past U+10FFFF are invalid too ("\xC0\xA0" is not a space).
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        ++i;
        return 0xFFFFFFFF;
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
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) || cp == 0xFEFF ||
           (cp >= 0xFE00 && cp <= 0xFE0F) ||                    // variation selectors (emoji style)
           (cp >= 0x1F3FB && cp <= 0x1F3FF) ||                  // skin-tone modifiers
           (cp >= 0xE0000 && cp <= 0xE007F);                    // tag characters
}

bool is_space(std::uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x00A0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Punctuation, symbols and emoji: what people put between the characters of a word to break
// a filter ("加.微.信", "刷🔥单"). Letters, digits, CJK ideographs and the circled letters and
// digits (folded or kept as look-alikes) are not separators.
bool is_separator(std::uint32_t cp)
{
    if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F && cp != '+') || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
    if (cp < 0x2000) return (cp >= 0xA1 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7;
    if (cp < 0x3000) {
        return (cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E) || (cp >= 0x20A0 && cp <= 0x20FF) ||
               (cp >= 0x2190 && cp <= 0x245F) || (cp >= 0x2500 && cp <= 0x2BFF) || (cp >= 0x2E00 && cp <= 0x2E7F);
    }
    if (cp < 0x3100) return (cp >= 0x3001 && cp <= 0x3004) || (cp >= 0x3008 && cp <= 0x3020) || cp == 0x3030 || (cp >= 0x303D && cp <= 0x303F) || cp == 0x30FB;
    if (cp >= 0xFE10 && cp <= 0xFE6F) return cp <= 0xFE19 || cp >= 0xFE30;
    if (cp >= 0xFF5F && cp <= 0xFF65) return true;
    if (cp >= 0xFFE0 && cp <= 0xFFEE) return true;
    return cp >= 0x1F000 && cp <= 0x1FAFF;
}

std::uint32_t fold_width_and_case(std::uint32_t cp)
{
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0;            // full-width ASCII
    else if (cp >= 0x24B6 && cp <= 0x24CF) cp = 'a' + (cp - 0x24B6); // Ⓐ..Ⓩ
    else if (cp >= 0x24D0 && cp <= 0x24E9) cp = 'a' + (cp - 0x24D0); // ⓐ..ⓩ
    else if (cp == 0x2795) cp = '+';                                 // ➕ heavy plus sign
    else if (cp == 0x212A) cp = 'k';                                 // Kelvin sign
    else if (cp == 0x017F) cp = 's';                                 // long s
    if (cp >= 'A' && cp <= 'Z') cp += 'a' - 'A';
    return cp;
}

bool ascii_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Bytes that start no character normalisation changes, so runs of them are copied as they are:
// most of every Chinese message. Continuation bytes and invalid lead bytes (copied through
// unchanged) count as plain; lead bytes whose range holds a space, an invisible, a separator
// or a folded character do not.
struct PlainBytes {
    bool regex[256];
    bool keyword[256];
    constexpr PlainBytes() : regex{}, keyword{}
    {
        for (int b = 0; b < 256; ++b) {
            bool plain = true;
            if (b < 0x80) plain = !((b >= 'A' && b <= 'Z') || b == ' ' || (b >= 0x09 && b <= 0x0D));
            else if (b == 0xC2 || b == 0xC3 || b == 0xC5 || b == 0xCD || b == 0xE1 || b == 0xE2 || b == 0xE3 || b == 0xEF || b == 0xF0 || b == 0xF3) plain = false;
            regex[b] = plain;
            keyword[b] = plain && !(b < 0x80 && (b == '+' || ((b >= 0x21 && b <= 0x2F) || (b >= 0x3A && b <= 0x40) || (b >= 0x5B && b <= 0x60) || (b >= 0x7B && b <= 0x7E))));
        }
    }
};
constexpr PlainBytes plain_bytes;

std::size_t plain_run(std::string_view text, std::size_t i, Fold fold)
{
    const bool* plain = fold == Fold::keyword ? plain_bytes.keyword : plain_bytes.regex;
    while (i < text.size() && plain[static_cast<unsigned char>(text[i])]) ++i;
    return i;
}

// Normalises text[i..] onto `out`, whose normalisation began at out[start] (text[..i] was
// plain and is already there).
void normalize_from(std::string_view text, std::size_t i, Fold fold, std::string& out, std::size_t start)
{
    const bool keyword = fold == Fold::keyword;
    bool pending_space = false;
    // Keyword fold: separators go out tentatively from `sep_at` and stay only between two ASCII
    // letters or digits ("3.15", "a-b"); next to anything else they are taken back out.
    std::size_t sep_at = std::string::npos;
    bool sep_after_alnum = false;
    auto before_char = [&](bool alnum) {
        if (pending_space && !keyword && out.size() > start) out.push_back(' ');
        pending_space = false;
        if (sep_at != std::string::npos) {
            if (!(sep_after_alnum && alnum)) out.resize(sep_at);
            sep_at = std::string::npos;
        }
    };
    while (i < text.size()) {
        if (const std::size_t end = plain_run(text, i, fold); end > i) {
            before_char(ascii_alnum(static_cast<unsigned char>(text[i])));
            out.append(text.data() + i, end - i);
            i = end;
            continue;
        }
        const std::size_t at = i;
        const auto cp = next_code_point(text, i);
        if (cp == 0xFFFFFFFF) {
            before_char(false);
            out.push_back(text[at]);
            continue;
        }
        if (is_invisible(cp)) continue;
        if (is_space(cp)) {
            pending_space = true;
            continue;
        }
        const auto folded = fold_width_and_case(cp);
        if (keyword && folded == '+') {
            before_char(false);
            out += "加";
            continue;
        }
        if (keyword && is_separator(folded)) {
            if (sep_at == std::string::npos) {
                sep_at = out.size();
                sep_after_alnum = out.size() > start && ascii_alnum(static_cast<unsigned char>(out.back()));
            }
            pending_space = false;
        } else {
            before_char(folded < 0x80 && ascii_alnum(static_cast<unsigned char>(folded)));
        }
        if (folded == cp) out.append(text.substr(at, i - at));
        else append_utf8(folded, out);
    }
    if (sep_at != std::string::npos) out.resize(sep_at);
}

} // namespace

void normalize_into(std::string_view text, Fold fold, std::string& out)
{
    normalize_from(text, 0, fold, out, out.size());
}

std::string_view normalized(std::string_view text, Fold fold, std::string& buffer)
{
    const std::size_t plain = plain_run(text, 0, fold);
    if (plain == text.size()) return text;
    buffer.assign(text.data(), plain);
    normalize_from(text, plain, fold, buffer, 0);
    return buffer;
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
