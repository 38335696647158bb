//! Errors as a person reads them: one line, the error and its causes.

/// An error and its sources joined with `: `, each cause on its first line only and skipped when
/// its parent already says it (SDK errors repeat their source in their own message).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = first_line(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        let text = first_line(&cause.to_string());
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("connecting to the queue: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Dispatch(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once_on_one_line() {
        let e = Dispatch(std::io::Error::other("Connection refused\n(os error 111)"));
        assert_eq!(super::one_line(&e), "dispatch failure: Connection refused");
        let e = Repeats(std::io::Error::other("no such queue"));
        assert_eq!(super::one_line(&e), "connecting to the queue: no such queue");
    }
}
