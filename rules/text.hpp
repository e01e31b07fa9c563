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
    /// Width (U+FF01–FF5E to ASCII, ideographic space, circled letters, ➕ to +), ASCII case,
    /// zero-width and format characters (and emoji variation selectors, skin tones) removed,
    /// whitespace runs collapsed to one space and trimmed. What user regexes see.
    regex,
    /// `regex`, plus every whitespace removed, "+" read as "加" (加V, +V, ＋Ｖ, 加 v are one
    /// keyword), and punctuation, symbols and emoji removed unless they sit between two ASCII
    /// letters or digits ("加.微.信" and "刷🔥单" are 加微信 and 刷单; "3.15" stays). What keyword
    /// and exact matching see.
    keyword,
};

/// Normalises UTF-8 `text`. Invalid UTF-8 bytes (overlong forms included) are kept as they are.
[[nodiscard]] std::string normalize(std::string_view text, Fold fold);
/// Appends the normalisation of `text` to `out` (no allocation when `out` has capacity).
void normalize_into(std::string_view text, Fold fold, std::string& out);
/// The normalisation of `text`: `text` itself when normalising changes nothing (most plain
/// Chinese messages, found without copying), else `buffer` filled with it.
[[nodiscard]] std::string_view normalized(std::string_view text, Fold fold, std::string& buffer);

/// A fingerprint of a message's text for "the same text again": 16 hex characters of FNV-1a
/// over its keyword normalisation (so 加V and ＋ｖ variants of one ad are the same text).
/// Empty for text that normalises to nothing.
[[nodiscard]] std::string text_fingerprint(std::string_view text);

/// Shell-style glob over UTF-8: `*` any run, `?` one character; everything else literal.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view text);

} // namespace qunbot::rules
