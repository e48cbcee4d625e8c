//! Segment rules as SQL: an audience of any size is selected by the database in one pass
//! instead of streaming every profile through the rule in Rust. The translation keeps the
//! rule language's two-valued logic (an unanswered field is "no" for every test but `ne`
//! and `present = false`), so `NOT` means "does not match" exactly as `Rule::matches` does;
//! a property test holds the two to the same answers on both backends.

use super::{Store, StoreError};
use crate::profile::{Kind, Question};
use crate::segment::{Behaviour, FieldTest, Rule, Scalar};

/// A bound value of a compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Int(i64),
    Text(String),
}

/// A rule compiled to a boolean SQL expression over `profiles` with `$N` placeholders.
#[derive(Debug, Clone)]
struct Compiled {
    sql: String,
    args: Vec<Arg>,
}

struct Compiler {
    args: Vec<Arg>,
    now: i64,
}

impl Compiler {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn rule(&mut self, r: &Rule) -> String {
        match r {
            Rule::All(rs) if rs.is_empty() => "(1 = 1)".into(),
            Rule::Any(rs) if rs.is_empty() => "(1 = 0)".into(),
            Rule::All(rs) => {
                let parts = rs.iter().map(|r| self.rule(r)).collect::<Vec<_>>();
                balanced(&parts, " AND ")
            }
            Rule::Any(rs) => {
                let parts = rs.iter().map(|r| self.rule(r)).collect::<Vec<_>>();
                balanced(&parts, " OR ")
            }
            Rule::Not(r) => format!("(NOT {})", self.rule(r)),
            Rule::Behaviour(b) => self.behaviour(b),
            Rule::Field { field, test } => self.field(*field, test),
        }
    }

    fn behaviour(&mut self, b: &Behaviour) -> String {
        let q = b.event_query();
        let (kind, campaign, tag, within) = (q.kind, q.campaign, q.tag, q.within_days);
        let mut sql = format!(
            "(id IN (SELECT profile_id FROM events WHERE kind = {} AND automated = 0",
            self.arg(Arg::Text(kind.as_str().into()))
        );
        if let Some(c) = campaign {
            sql.push_str(&format!(
                " AND campaign = {}",
                self.arg(Arg::Text(c.to_string()))
            ));
        }
        if let Some(t) = tag {
            sql.push_str(&format!(
                " AND tag = {}",
                self.arg(Arg::Text(t.to_string()))
            ));
        }
        if let Some(d) = within {
            let since = self.now - i64::from(d) * 86_400;
            sql.push_str(&format!(" AND created_at >= {}", self.arg(Arg::Int(since))));
        }
        if q.times > 1 {
            sql.push_str(&format!(
                " GROUP BY profile_id HAVING COUNT(*) >= {}",
                self.arg(Arg::Int(i64::from(q.times)))
            ));
        }
        sql.push_str("))");
        sql
    }

    fn field(&mut self, q: Question, test: &FieldTest) -> String {
        let col = match q {
            Question::Email => "email_key",
            other => other.key(),
        };
        let numeric = matches!(q.kind(), Kind::Number { .. });
        if q.kind() == Kind::MultiChoice {
            // A list (products, topics) is stored as a JSON array of configured values:
            // look for the quoted value.
            let has = |c: &mut Compiler, v: &str| {
                let needle = format!(
                    "%{}%",
                    like_escape(&serde_json::to_string(v).expect("strings serialise"))
                );
                format!(
                    "({col} IS NOT NULL AND {col} LIKE {} ESCAPE '\\')",
                    c.arg(Arg::Text(needle))
                )
            };
            return match test {
                FieldTest::Contains(v) => has(self, v),
                FieldTest::In(vs) => {
                    let parts: Vec<String> = vs
                        .iter()
                        .filter_map(|v| match v {
                            Scalar::Text(s) => Some(has(self, s)),
                            _ => None,
                        })
                        .collect();
                    if parts.is_empty() {
                        "(1 = 0)".into()
                    } else {
                        balanced(&parts, " OR ")
                    }
                }
                FieldTest::Present(true) => format!("({col} IS NOT NULL AND {col} <> '[]')"),
                FieldTest::Present(false) => format!("({col} IS NULL OR {col} = '[]')"),
                _ => "(1 = 0)".into(),
            };
        }
        let lhs = if numeric {
            col.to_string()
        } else {
            format!("lower({col})")
        };
        let eq = |c: &mut Compiler, v: &Scalar| -> String {
            match (v, numeric) {
                (Scalar::Int(n), true) => {
                    format!("({col} IS NOT NULL AND {col} = {})", c.arg(Arg::Int(*n)))
                }
                (Scalar::Text(s), false) => {
                    format!(
                        "({col} IS NOT NULL AND {lhs} = {})",
                        c.arg(Arg::Text(s.to_ascii_lowercase()))
                    )
                }
                _ => "(1 = 0)".into(),
            }
        };
        match test {
            FieldTest::Eq(v) => eq(self, v),
            FieldTest::Ne(v) => format!("(NOT {})", eq(self, v)),
            FieldTest::In(vs) if vs.is_empty() => "(1 = 0)".into(),
            FieldTest::In(vs) => {
                // One IN list, not a chain of ORs (SQLite refuses expressions over 1,000
                // deep): the values of the column's type, compared as `eq` compares them.
                let values: Vec<String> = vs
                    .iter()
                    .filter_map(|v| match (v, numeric) {
                        (Scalar::Int(n), true) => Some(self.arg(Arg::Int(*n))),
                        (Scalar::Text(s), false) => {
                            Some(self.arg(Arg::Text(s.to_ascii_lowercase())))
                        }
                        _ => None,
                    })
                    .collect();
                if values.is_empty() {
                    "(1 = 0)".into()
                } else {
                    format!("({col} IS NOT NULL AND {lhs} IN ({}))", values.join(", "))
                }
            }
            FieldTest::Lt(n) => {
                format!("({col} IS NOT NULL AND {col} < {})", self.arg(Arg::Int(*n)))
            }
            FieldTest::Lte(n) => format!(
                "({col} IS NOT NULL AND {col} <= {})",
                self.arg(Arg::Int(*n))
            ),
            FieldTest::Gt(n) => {
                format!("({col} IS NOT NULL AND {col} > {})", self.arg(Arg::Int(*n)))
            }
            FieldTest::Gte(n) => format!(
                "({col} IS NOT NULL AND {col} >= {})",
                self.arg(Arg::Int(*n))
            ),
            FieldTest::Contains(s) => {
                let needle = format!("%{}%", like_escape(&s.to_ascii_lowercase()));
                format!(
                    "({col} IS NOT NULL AND lower({col}) LIKE {} ESCAPE '\\')",
                    self.arg(Arg::Text(needle))
                )
            }
            FieldTest::Present(true) => format!("({col} IS NOT NULL)"),
            FieldTest::Present(false) => format!("({col} IS NULL)"),
        }
    }
}

/// `parts` joined by `op` as a balanced tree of parentheses: a list of n tests nests
/// log2(n) deep instead of n (SQLite's parser refuses expressions over 1,000 deep, which a
/// flat chain of 600 ORs already is).
fn balanced(parts: &[String], op: &str) -> String {
    match parts {
        [] if op == " AND " => "(1 = 1)".into(),
        [] => "(1 = 0)".into(),
        [one] => one.clone(),
        _ => {
            let (a, b) = parts.split_at(parts.len() / 2);
            format!("({}{op}{})", balanced(a, op), balanced(b, op))
        }
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn compile(rule: &Rule, now: i64) -> Compiled {
    let mut c = Compiler {
        args: Vec::new(),
        now,
    };
    let sql = c.rule(rule);
    Compiled { sql, args: c.args }
}

fn bind<'q>(
    mut q: sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Int(n) => q.bind(*n),
            Arg::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// A segment's audience query, ready to run.
#[derive(Debug, Clone)]
pub struct AudienceQuery {
    compiled: Compiled,
}

impl AudienceQuery {
    /// Compiles `rule` as of `now` (for `within_days`).
    pub fn new(rule: &Rule, now: i64) -> AudienceQuery {
        AudienceQuery {
            compiled: compile(rule, now),
        }
    }

    /// How many placeholders the expression uses (`$1..=$n`); statements number theirs after.
    pub(super) fn arg_count(&self) -> usize {
        self.compiled.args.len()
    }

    /// Binds the expression's values, in order, to a statement.
    pub(super) fn bind_all<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for a in &self.compiled.args {
            q = match a {
                Arg::Int(n) => q.bind(*n),
                Arg::Text(s) => q.bind(s.as_str()),
            };
        }
        q
    }

    /// The boolean SQL expression (for logs and tests).
    pub fn sql(&self) -> &str {
        &self.compiled.sql
    }
}

impl Store {
    /// How many subscribed profiles are in the segment.
    pub async fn audience_count(&self, q: &AudienceQuery) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM profiles WHERE status = 'subscribed' AND {}",
            q.compiled.sql
        );
        Ok(bind(sqlx::query_scalar(&sql), &q.compiled.args)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Up to `limit` ids of subscribed profiles in the segment with an id above `after`,
    /// in id order: callers page through an audience of any size.
    pub async fn audience_page(
        &self,
        q: &AudienceQuery,
        after: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let n = q.compiled.args.len();
        let sql = format!(
            "SELECT id FROM profiles WHERE status = 'subscribed' AND id > ${} AND {} ORDER BY id LIMIT ${}",
            n + 1,
            q.compiled.sql,
            n + 2
        );
        let query = bind(sqlx::query_scalar(&sql), &q.compiled.args)
            .bind(after)
            .bind(limit);
        Ok(query.fetch_all(&self.pool).await?)
    }
}
