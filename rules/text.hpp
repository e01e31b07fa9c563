#pragma once
/// \file
/// Chinese-aware text normalisation. Group messages are full of variants meant to slip past
/// filters: full-width letters (ＶＸ), zero-width joiners between characters, spaces inside
/// words, ＋ for 加. Rule keywords and message text go through the same function, so a keyword
/// matches every variant of itself.

#include <string>
#include <string_view>

namespace qunbot::rules {

enum class Fold {
    /// Width (U+FF01–FF5E to ASCII, ideographic space, circled letters), ASCII case, zero-width
    /// and format characters removed, whitespace runs collapsed to one space and trimmed.
    /// What user regexes see.
    regex,
    /// `regex`, plus every whitespace removed and "+" read as "加" (加V, +V, ＋Ｖ, 加 v are one
    /// keyword). What keyword and exact matching see.
    keyword,
};

/// Normalises UTF-8 `text`. Invalid UTF-8 bytes are kept as they are.
[[nodiscard]] std::string normalize(std::string_view text, Fold fold);
/// Appends the normalisation of `text` to `out` (no allocation when `out` has capacity).
void normalize_into(std::string_view text, Fold fold, std::string& out);

/// A fingerprint of a message's text for "the same text again": 16 hex characters of FNV-1a
/// over its keyword normalisation (so 加V and ＋ｖ variants of one ad are the same text).
/// Empty for text that normalises to nothing.
[[nodiscard]] std::string text_fingerprint(std::string_view text);

/// Shell-style glob over UTF-8: `*` any run, `?` one character; everything else literal.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view text);

} // namespace qunbot::rules
