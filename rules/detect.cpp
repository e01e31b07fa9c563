#include "rules/detect.hpp"

#include "rules/text.hpp"

#include <re2/re2.h>

#include <algorithm>

namespace qunbot::rules {

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to)
{
    for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// The text with dot spellings turned into '.', and spaces next to dots removed.
std::string dotted(std::string_view text)
{
    auto s = normalize(text, Fold::regex);
    for (std::string_view d : {"[.]", "(.)", "(dot)", "[dot]", " dot ", "点", "。", "．", "｡", "·", "丶", "、"}) replace_all(s, d, ".");
    auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == ' ' && ((i > 0 && s[i - 1] == '.') || (i + 1 < s.size() && s[i + 1] == '.'))) continue;
        // "w w w . c h e a p": a space between two single letters is a spacer, not a word gap.
        if (s[i] == ' ' && i > 0 && i + 1 < s.size() && alnum(s[i - 1]) && alnum(s[i + 1]) && (i < 2 || !alnum(s[i - 2])) &&
            (i + 2 >= s.size() || !alnum(s[i + 2]))) {
            continue;
        }
        out.push_back(s[i]);
    }
    return out;
}

// Only ASCII digits, with the separators people put between them removed where they sit
// between digits ("138 1234 5678", "138-1234-5678").
std::string squeezed_digits(const std::string& s)
{
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool sep = c == ' ' || c == '-' || c == '.' || c == '_' || c == '/';
        if (sep && !out.empty() && std::isdigit(static_cast<unsigned char>(out.back())) && i + 1 < s.size() &&
            std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
            continue;
        }
        out.push_back(c);
    }
    return out;
}

const RE2& domain_re()
{
    // A host of letters, digits and dashes ending in a TLD that ads use; the TLD must not run
    // on into more letters ("x.community" is not "x.com").
    static const RE2 re(
        R"((?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|cn|net|org|top|xyz|vip|cc|me|io|info|shop|site|club|online|)"
        R"(store|live|fun|icu|link|ltd|work|tech|app|co|tv|wang|ink|pro|asia|biz|love|life|cloud|win|bid|red|plus|group|mobi|tw|hk|ly|gl|gd|to|ws|la|ga))(?:[^a-z0-9]|$))");
    return re;
}

} // namespace

// One pass, no search calls: this runs on every message and nearly always finds nothing.
LatinCount count_latin(std::string_view t)
{
    LatinCount n;
    const auto* p = reinterpret_cast<const unsigned char*>(t.data());
    const std::size_t size = t.size();
    for (std::size_t i = 0; i < size; ++i) {
        const unsigned char c = p[i];
        // Branch-free for ASCII: bytes from 0x80 up fall outside both ranges.
        n.digits += static_cast<unsigned>(c - '0') < 10u ? 1 : 0;
        n.letters += static_cast<unsigned>((c | 0x20) - 'a') < 26u ? 1 : 0;
        if (c < 0xE2) continue;
        if (c == 0xEF && i + 2 < size) {
            // Full-width digits U+FF10–FF19 and letters U+FF21–FF3A, U+FF41–FF5A (not ，！？).
            const unsigned char b1 = p[i + 1], b2 = p[i + 2];
            if (b1 == 0xBC && b2 >= 0x90 && b2 <= 0x99) ++n.digits;
            else if ((b1 == 0xBC && b2 >= 0xA1 && b2 <= 0xBA) || (b1 == 0xBD && b2 >= 0x81 && b2 <= 0x9A)) ++n.letters;
        } else if (c == 0xE2 && i + 2 < size) {
            // Circled letters U+24B6–24E9 (E2 92 B6 – E2 93 A9), which normalisation folds to a–z.
            const unsigned char b1 = p[i + 1], b2 = p[i + 2];
            if ((b1 == 0x92 && b2 >= 0xB6) || (b1 == 0x93 && b2 <= 0xA9)) ++n.letters;
        }
    }
    return n;
}

LatinCount count_latin_folded(std::string_view t)
{
    // Byte arithmetic on purpose: it lets the compiler count 32 bytes per step.
    unsigned digits = 0, letters = 0;
    for (const char ch : t) {
        const auto c = static_cast<unsigned char>(ch);
        digits += static_cast<unsigned char>(c - '0') < 10 ? 1u : 0u;
        letters += static_cast<unsigned char>((c | 0x20) - 'a') < 26 ? 1u : 0u;
    }
    return {static_cast<int>(letters), static_cast<int>(digits)};
}

std::vector<std::string> find_domains(std::string_view text)
{
    std::vector<std::string> out;
    if (!count_latin(text).may_hold_domain()) return out;
    const auto s = dotted(text);
    // A domain is a dot and then a letter (its top-level name).
    bool dot_letter = false;
    for (std::size_t i = s.find('.'); i != std::string::npos && !dot_letter; i = s.find('.', i + 1)) {
        dot_letter = i + 1 < s.size() && s[i + 1] >= 'a' && s[i + 1] <= 'z';
    }
    if (!dot_letter) return out;
    re2::StringPiece input(s);
    std::string domain;
    while (RE2::FindAndConsume(&input, domain_re(), &domain)) {
        if (domain.starts_with("www.")) domain.erase(0, 4);
        if (std::find(out.begin(), out.end(), domain) == out.end()) out.push_back(domain);
    }
    return out;
}

bool domain_allowed(std::string_view domain, const std::vector<std::string>& allowed)
{
    for (const auto& a : allowed) {
        if (domain == a) return true;
        if (domain.size() > a.size() && domain.ends_with(a) && domain[domain.size() - a.size() - 1] == '.') return true;
    }
    return false;
}

ContactBait find_contact_bait(std::string_view text)
{
    ContactBait b;
    const auto count = count_latin(text);
    if (!count.may_hold_contact()) return b;
    auto s = normalize(text, Fold::regex);
    for (std::string_view plus : {"＋", "➕", "十"}) replace_all(s, plus, "+");
    const auto digits = squeezed_digits(s);
    // A mainland mobile number not inside a longer run of digits (order numbers are longer).
    static const RE2 phone(R"((?:^|[^0-9])(1[3-9][0-9]{9})(?:[^0-9]|$))");
    b.phone = count.digits >= 11 && RE2::PartialMatch(digits, phone);
    static const RE2 qq(R"((?:qq|扣扣|企鹅|q号|球球)[^0-9a-z]{0,6}([1-9][0-9]{4,10})(?:[^0-9]|$))");
    b.qq = count.digits >= 5 && RE2::PartialMatch(digits, qq);
    // A WeChat id (6–20 characters, a letter first) after a word that offers it, with at most a
    // few characters between ("加V：abc_123", "vx abc123", "微信号是abc123").
    static const RE2 wechat(
        R"((?:加\s*v|\+\s*v|加\s*微|加\s*薇|加\s*威|加我|\bvx\b|\bwx\b|v信|微信号|微信|薇信|威信|徽信|卫星|薇\s*:|v\s*:|vx:|wx:)[^a-z0-9]{0,6}([a-z][-_a-z0-9]{5,19})(?:[^-_a-z0-9]|$))");
    b.wechat = count.letters >= 1 && count.letters + count.digits >= 6 && RE2::PartialMatch(digits, wechat);
    return b;
}

} // namespace qunbot::rules
