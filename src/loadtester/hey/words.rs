//! Splitting a command line into words the way `sh` would for a *plain* command: quotes and
//! backslashes are honoured, and anything that needs a shell to mean what it says (pipes, `;`,
//! redirections, `$` expansions, backquotes, subshells, comments) is reported instead of guessed at.
//! A command that needs a shell is not the built-in `hey`; it goes to the shell policy.

use thiserror::Error;

/// Why a command line is not a plain list of words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WordsError {
    /// An operator or expansion that only a shell can carry out.
    #[error("the command uses shell syntax ({0:?}), which only a shell can run")]
    ShellSyntax(char),
    /// A quote was opened and never closed.
    #[error("the command has an unterminated {0} quote")]
    Unterminated(&'static str),
    /// The line ends in a lone backslash.
    #[error("the command ends with a lone backslash")]
    TrailingBackslash,
}

/// Characters that start a shell operator or expansion when unquoted.
const UNQUOTED_SPECIAL: &[char] = &['|', '&', ';', '<', '>', '(', ')', '$', '`'];

/// Splits `line` into words with POSIX `sh` quoting rules: `'...'` is literal, `"..."` allows
/// `\"`, `\\`, `` \` ``, `\$`, and a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, WordsError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even an empty quoted string) has been seen.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(WordsError::Unterminated("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            // Backslash-newline is a line continuation inside double quotes too.
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err(WordsError::Unterminated("double")),
                        },
                        Some(ch @ ('$' | '`')) => return Err(WordsError::ShellSyntax(ch)),
                        Some(ch) => word.push(ch),
                        None => return Err(WordsError::Unterminated("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    word.push(ch);
                }
                None => return Err(WordsError::TrailingBackslash),
            },
            '#' if !in_word => return Err(WordsError::ShellSyntax('#')),
            c if UNQUOTED_SPECIAL.contains(&c) => return Err(WordsError::ShellSyntax(c)),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn splits_on_any_whitespace_run() {
        assert_eq!(split("  hey\t-z  1m\n http://a/ "), ["hey", "-z", "1m", "http://a/"]);
        assert!(split("   ").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(split(r#"-H 'X-A: b "c" $d \e'"#), ["-H", r#"X-A: b "c" $d \e"#]);
    }

    #[test]
    fn double_quotes_allow_escapes_only_of_specials() {
        assert_eq!(split(r#"-d "{\"a\": 1} \n""#), ["-d", r#"{"a": 1} \n"#]);
    }

    #[test]
    fn quotes_join_with_adjacent_text_and_empty_quotes_make_a_word() {
        assert_eq!(split(r#"a'b c'"d e"f '' """#), ["ab cd ef", "", ""]);
    }

    #[test]
    fn backslash_escapes_outside_quotes() {
        assert_eq!(split(r"a\ b c\;d"), ["a b", "c;d"]);
        assert_eq!(split("a\\\nb"), ["ab"]);
    }

    #[test]
    fn urls_with_query_and_glob_characters_stay_literal() {
        assert_eq!(split("http://a/?x=1*[2]~"), ["http://a/?x=1*[2]~"]);
        assert_eq!(split("a#b"), ["a#b"]);
    }

    #[test]
    fn shell_operators_and_expansions_are_refused() {
        for (line, c) in [
            ("hey http://a | tee x", '|'),
            ("hey http://a; rm -rf /", ';'),
            ("hey http://a && curl b", '&'),
            ("hey http://a > /tmp/x", '>'),
            ("hey http://a < /tmp/x", '<'),
            ("hey $(cat /etc/passwd)", '$'),
            ("hey $URL", '$'),
            ("hey `id`", '`'),
            ("hey (x)", '('),
            ("hey http://a # comment", '#'),
            (r#"hey "$HOME""#, '$'),
            (r#"hey "`id`""#, '`'),
        ] {
            assert_eq!(split_words(line), Err(WordsError::ShellSyntax(c)), "{line}");
        }
    }

    #[test]
    fn quoted_operators_are_plain_text() {
        assert_eq!(split(r#"-d 'a|b;c&d>e<f$g`h' "x|y;z&""#), ["-d", "a|b;c&d>e<f$g`h", "x|y;z&"]);
    }

    #[test]
    fn unterminated_quotes_and_trailing_backslash_are_errors() {
        assert_eq!(split_words("hey 'abc"), Err(WordsError::Unterminated("single")));
        assert_eq!(split_words("hey \"abc"), Err(WordsError::Unterminated("double")));
        assert_eq!(split_words("hey abc\\"), Err(WordsError::TrailingBackslash));
    }
}
