//! Versions and version constraints, under two orderings: box versions
//! compare like Vagrant's (dotted numbers), package versions like dpkg's.
//! One constraint type serves both: `>= 1.0, < 2`, `~> 1.2` (boxes),
//! `>= 3.11, < 4` (packages).

use std::cmp::Ordering;
use std::fmt;

/// Which ordering a constraint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Dotted numbers (`1.10` > `1.9`), text for non-numeric parts: box
    /// versions, as Vagrant and RubyGems order them.
    Dotted,
    /// dpkg's ordering: epochs, `~`, revisions (package versions).
    Dpkg,
}

impl Rules {
    /// Compares two versions under these rules.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Rules::Dotted => compare_dotted(a, b),
            Rules::Dpkg => compare_dpkg(a, b),
        }
    }
}

/// Comparison operators of numbers and versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` (the default)
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Splits a leading operator off `text` (none means `=`).
    pub fn split(text: &str) -> (Op, &str) {
        let text = text.trim();
        for (sign, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = text.strip_prefix(sign) {
                return (op, rest.trim());
            }
        }
        (Op::Eq, text)
    }

    /// Whether an ordering of (found, wanted) satisfies the operator.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }

    /// The operator as written before a value (`""` for `=`).
    pub fn sign(self) -> &'static str {
        match self {
            Op::Eq => "",
            Op::Ne => "!= ",
            Op::Lt => "< ",
            Op::Le => "<= ",
            Op::Gt => "> ",
            Op::Ge => ">= ",
        }
    }
}

/// A version constraint: every comparison must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    rules: Rules,
    parts: Vec<(Op, String)>,
}

impl Constraint {
    /// A box version constraint: `1.2`, `= 1.2`, `>= 1.0, < 2`, `~> 1.2`.
    /// `~> X.Y` means `>= X.Y, < X+1` and `~> X.Y.Z` means `>= X.Y.Z,
    /// < X.Y+1` (Vagrant's and RubyGems' pessimistic operator).
    pub fn parse_box(text: &str) -> Result<Constraint, String> {
        let mut parts = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if let Some(version) = part.strip_prefix("~>").map(str::trim) {
                let numbers: Vec<&str> = version.split('.').collect();
                if version.is_empty() || version.contains(char::is_whitespace) {
                    return Err(not_a_box_constraint(text));
                }
                if numbers.len() < 2 {
                    return Err(format!(
                        "`~> {version}` needs at least two parts (`~> 1.2`)"
                    ));
                }
                let mut upper: Vec<String> = numbers[..numbers.len() - 1]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let last = upper.len() - 1;
                let bumped = upper[last]
                    .parse::<u64>()
                    .map_err(|_| format!("`~> {version}`: not a numeric version"))?
                    + 1;
                upper[last] = bumped.to_string();
                parts.push((Op::Ge, version.to_string()));
                parts.push((Op::Lt, upper.join(".")));
                continue;
            }
            let (op, version) = Op::split(part);
            if version.is_empty() || version.contains(char::is_whitespace) {
                return Err(not_a_box_constraint(text));
            }
            parts.push((op, version.to_string()));
        }
        Ok(Constraint {
            rules: Rules::Dotted,
            parts,
        })
    }

    /// A package version expectation: `"1.22.1-9"` (exactly; without a
    /// revision any revision matches), or `">= 1.2, < 2"`, in dpkg's order.
    pub fn parse_package(text: &str) -> Result<Constraint, String> {
        let parts: Vec<(Op, String)> = text
            .split(',')
            .map(|part| {
                let (op, rest) = Op::split(part);
                (op, rest.to_string())
            })
            .collect();
        if parts.iter().any(|(_, v)| v.is_empty()) {
            return Err(format!(
                "`{text}` is not a version or a constraint like \">= 1.2, < 2\""
            ));
        }
        Ok(Constraint {
            rules: Rules::Dpkg,
            parts,
        })
    }

    /// Whether `version` satisfies every comparison.
    pub fn holds(&self, version: &str) -> bool {
        self.parts
            .iter()
            .all(|(op, want)| op.holds(self.rules.compare(version, want)))
    }
}

fn not_a_box_constraint(text: &str) -> String {
    format!("`{text}` is not a version constraint: write `1.2`, `>= 1.0, < 2` or `~> 1.2`")
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(op, v)| format!("{}{v}", op.sign()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Orders box versions numerically part by part (`1.10` > `1.9`), falling
/// back to text for non-numeric parts.
pub fn compare_dotted(a: &str, b: &str) -> Ordering {
    let mut pa = a.split(['.', '-']);
    let mut pb = b.split(['.', '-']);
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Compares package versions like dpkg: `[epoch:]upstream[-revision]`, a
/// missing epoch is 0, `~` sorts before anything (`1.0~rc1 < 1.0`), and
/// digit runs compare as numbers. A constraint without a revision matches
/// any revision of its upstream version (`= 1.22.1` holds for `1.22.1-9`).
pub fn compare_dpkg(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_dpkg(a);
    let (eb, ub, rb) = split_dpkg(b);
    ea.cmp(&eb)
        .then_with(|| compare_dpkg_part(ua, ub))
        .then_with(|| match rb {
            // The constraint names no revision: any revision matches.
            None => Ordering::Equal,
            Some(rb) => compare_dpkg_part(ra.unwrap_or("0"), rb),
        })
}

fn split_dpkg(v: &str) -> (u64, &str, Option<&str>) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, Some(revision)),
        None => (epoch, rest, None),
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_dpkg_part(a: &str, b: &str) -> Ordering {
    fn order(c: Option<char>) -> i32 {
        match c {
            None => 0,
            Some('~') => -1,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    let (mut a, mut b) = (a.chars().peekable(), b.chars().peekable());
    loop {
        // Non-digit runs, character by character.
        while a.peek().is_some_and(|c| !c.is_ascii_digit())
            || b.peek().is_some_and(|c| !c.is_ascii_digit())
        {
            let ca = a.peek().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.peek().copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                a.next();
            }
            if cb.is_some() {
                b.next();
            }
        }
        // Digit runs, as numbers.
        let mut da = String::new();
        while let Some(c) = a.peek().copied().filter(char::is_ascii_digit) {
            da.push(c);
            a.next();
        }
        let mut db = String::new();
        while let Some(c) = b.peek().copied().filter(char::is_ascii_digit) {
            db.push(c);
            b.next();
        }
        let (na, nb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
        let by_number = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if by_number != Ordering::Equal {
            return by_number;
        }
        if a.peek().is_none() && b.peek().is_none() {
            return Ordering::Equal;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_versions_compare_part_by_part() {
        assert_eq!(compare_dotted("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_dotted("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_dotted("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_dotted("2", "10"), Ordering::Less);
    }

    #[test]
    fn box_constraints() {
        let c = Constraint::parse_box(">= 1.0, < 2").unwrap();
        assert!(c.holds("1.0") && c.holds("1.9.9") && !c.holds("2.0") && !c.holds("0.9"));
        let c = Constraint::parse_box("~> 1.2").unwrap();
        assert!(c.holds("1.2") && c.holds("1.99") && !c.holds("2.0") && !c.holds("1.1"));
        let c = Constraint::parse_box("~> 1.2.3").unwrap();
        assert!(c.holds("1.2.3") && c.holds("1.2.9") && !c.holds("1.3.0"));
        assert!(Constraint::parse_box("1.10").unwrap().holds("1.10"));
        assert!(!Constraint::parse_box("= 1.10").unwrap().holds("1.9"));
        assert!(Constraint::parse_box("!= 1").unwrap().holds("2"));
        assert!(
            Constraint::parse_box(">= 1 0")
                .unwrap_err()
                .contains("not a version constraint")
        );
        assert!(
            Constraint::parse_box("~> 1")
                .unwrap_err()
                .contains("two parts")
        );
        assert!(
            Constraint::parse_box("~> x.1")
                .unwrap_err()
                .contains("not a numeric")
        );
        assert!(Constraint::parse_box("").is_err());
    }

    #[test]
    fn package_versions_compare_like_dpkg() {
        use Ordering::*;
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0", "1.0a", Less),
            ("1:0.9", "2.0", Greater),
            ("2.0", "1:0.1", Less),
            ("3.11.2-6", "3.11.2-6+deb12u1", Less),
            ("3.11.2-6", "3.11.2-10", Less),
            ("1.22.1-9", "1.22.1", Equal),
            ("0001", "1", Equal),
            ("1.2.3", "1.2", Greater),
            ("7.2+dfsg-7+deb12u18", "7.2+dfsg-7+deb12u2", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_dpkg(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn package_constraints() {
        let m = Constraint::parse_package(">= 3.11, < 4").unwrap();
        assert!(m.holds("3.11.2-6+deb12u1"));
        assert!(!m.holds("3.10.9-1"));
        assert!(!m.holds("4.0-1"));
        assert!(
            Constraint::parse_package("1.22.1")
                .unwrap()
                .holds("1.22.1-9")
        );
        assert!(
            Constraint::parse_package("= 1.22.1-9")
                .unwrap()
                .holds("1.22.1-9")
        );
        assert!(
            !Constraint::parse_package("= 1.22.1-8")
                .unwrap()
                .holds("1.22.1-9")
        );
        assert!(Constraint::parse_package(">= ").is_err());
        assert_eq!(
            Constraint::parse_package(">=1.2,<2").unwrap().to_string(),
            ">= 1.2, < 2"
        );
    }

    #[test]
    fn the_two_orderings_differ_where_they_should() {
        // dpkg: `~` sorts first; dotted: plain text order.
        assert_eq!(Rules::Dpkg.compare("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(Rules::Dotted.compare("1.0~rc1", "1.0"), Ordering::Greater);
    }
}
