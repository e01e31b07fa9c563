#pragma once
/// \file
/// Ad and contact-bait detectors for group messages (广告清理), usable as rule conditions
/// (`links`, `contact_bait`). Pure functions over the message text, after the same
/// normalisation as keywords (full-width → half-width, case, zero-width characters) plus the
/// spellings people use to slip past filters: "www点xxx点com", "。com", "[.]", digits with
/// spaces or dashes between them, "加V / 加薇 / ＋v / vx".

#include <string>
#include <string_view>
#include <vector>

namespace qunbot::rules {

/// Latin letters and digits in a text (ASCII, full-width, circled letters). Domains, ids and
/// phone numbers are made of them; plain Chinese chatter has few or none, and the detectors
/// below then return at once.
struct LatinCount {
    int letters = 0;
    int digits = 0;
    /// A top-level domain alone is two letters.
    [[nodiscard]] bool may_hold_domain() const noexcept { return letters >= 2; }
    /// A QQ number is five digits, a WeChat id six characters; a phone number is longer.
    [[nodiscard]] bool may_hold_contact() const noexcept { return letters + digits >= 5; }
};
[[nodiscard]] LatinCount count_latin(std::string_view text);
/// The same count over text already normalised for keywords, where every Latin letter and digit
/// is ASCII: one branch-free (vectorised) pass.
[[nodiscard]] LatinCount count_latin_folded(std::string_view keyword_text);

/// Domains (lower case, without "www.") that `text` links to or spells out.
[[nodiscard]] std::vector<std::string> find_domains(std::string_view text);
/// Whether `domain` is `allowed` or a subdomain of it.
[[nodiscard]] bool domain_allowed(std::string_view domain, const std::vector<std::string>& allowed);

/// What contact bait was found.
struct ContactBait {
    bool wechat = false; ///< a WeChat id offered ("加V abc_123", "vx：abc123", "微信号 abc123")
    bool phone = false;  ///< a mainland mobile number (11 digits starting 13–19, separators allowed)
    bool qq = false;     ///< a QQ number after "QQ / 扣扣 / 企鹅"
    [[nodiscard]] bool any() const noexcept { return wechat || phone || qq; }
};
[[nodiscard]] ContactBait find_contact_bait(std::string_view text);

} // namespace qunbot::rules
