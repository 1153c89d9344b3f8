//! Argo Rollouts' metric conditions: expr-lang expressions over `result`, with the helper
//! functions Argo's evaluator offers (`asInt`, `asFloat`, `isNaN`, `isInf`, `isNil`,
//! `default`), so a condition written for Argo means the same here.

use expr::{Context, Environment, Value};

/// A measured value: what a provider gives a condition as `result`.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    /// One number (a Prometheus scalar, pier's own measures).
    Number(f64),
    /// Numbers (a Prometheus vector, one per series).
    Numbers(Vec<f64>),
    /// A JSON document or part of one (the web provider).
    Json(serde_json::Value),
}

impl Measured {
    /// The value as a measurement records it (`0.97`, `[0.97,1]`, JSON).
    pub fn text(&self) -> String {
        fn number(f: f64) -> String {
            if f.is_nan() {
                "NaN".into()
            } else {
                format!("{f}")
            }
        }
        match self {
            Measured::Number(f) => number(*f),
            Measured::Numbers(v) => {
                let parts: Vec<String> = v.iter().map(|f| number(*f)).collect();
                format!("[{}]", parts.join(","))
            }
            Measured::Json(v) => match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Measured::Number(f) => Value::Float(*f),
            Measured::Numbers(v) => Value::Array(v.iter().map(|f| Value::Float(*f)).collect()),
            Measured::Json(v) => json_value(v),
        }
    }
}

/// Checks that `text` parses as a condition.
pub fn compile(text: &str) -> Result<(), String> {
    expr::compile(text)
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not a valid expression: {}", one_line(&e)))
}

/// Evaluates `text` with `result` bound to the measured value; a condition must give a bool.
pub fn evaluate(text: &str, result: &Measured) -> Result<bool, String> {
    let value = result.to_value();
    let mut ctx = Context::default();
    ctx.insert("result", value.clone());
    let env = environment(value);
    match env.eval(text, &ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("{text:?} gave {other:?}, not true or false")),
        Err(e) => Err(format!("evaluating {text:?}: {}", one_line(&e))),
    }
}

/// Argo's functions; `isNil` and `default` look at the result itself.
fn environment(result: Value) -> Environment<'static> {
    let mut env = Environment::new();
    env.add_function("asInt", |c| match c.args.first() {
        Some(Value::Integer(n)) => Ok(Value::Integer(*n)),
        Some(Value::Float(f)) if f.fract() == 0.0 => Ok(Value::Integer(*f as i64)),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|e| expr::Error::ExprError(format!("asInt({s:?}): {e}"))),
        other => Err(expr::Error::ExprError(format!(
            "asInt takes a number or a string, not {other:?}"
        ))),
    });
    env.add_function("asFloat", |c| match c.args.first() {
        Some(Value::Integer(n)) => Ok(Value::Float(*n as f64)),
        Some(Value::Float(f)) => Ok(Value::Float(*f)),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|e| expr::Error::ExprError(format!("asFloat({s:?}): {e}"))),
        other => Err(expr::Error::ExprError(format!(
            "asFloat takes a number or a string, not {other:?}"
        ))),
    });
    env.add_function("isNaN", |c| {
        Ok(Value::Bool(
            matches!(c.args.first(), Some(Value::Float(f)) if f.is_nan()),
        ))
    });
    env.add_function("isInf", |c| {
        Ok(Value::Bool(
            matches!(c.args.first(), Some(Value::Float(f)) if f.is_infinite()),
        ))
    });
    let nil = result.is_nil();
    env.add_function("isNil", move |_| Ok(Value::Bool(nil)));
    env.add_function("default", move |c| {
        if result.is_nil() {
            Ok(c.args.into_iter().next().unwrap_or_default())
        } else {
            Ok(result.clone())
        }
    });
    env
}

/// A JSON value as an expr value.
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_value).collect()),
        serde_json::Value::Object(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect())
        }
    }
}

fn one_line(e: &expr::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argo_conditions_mean_what_they_do_in_argo() {
        let j = Measured::Json;
        let cases = [
            ("result[0] >= 0.95", Measured::Numbers(vec![0.97]), true),
            ("result[0] >= 0.95", Measured::Numbers(vec![0.5]), false),
            (
                "len(result) == 0 || result[0] < 5",
                Measured::Numbers(vec![]),
                true,
            ),
            ("result >= 0.95", Measured::Number(1.0), true),
            ("result == 1", Measured::Number(1.0), true),
            ("result == 'true'", j(json!("true")), true),
            ("asInt(result) > 2", j(json!("3")), true),
            ("asFloat(result) < 0.1", j(json!("0.05")), true),
            (
                "result.ok == true && result.count > 10",
                j(json!({"ok": true, "count": 12})),
                true,
            ),
            ("isNil(result)", j(json!(null)), true),
            ("default(1.0) > 0.5", j(json!(null)), true),
            (
                "all(result, {# > 0.9})",
                Measured::Numbers(vec![0.95, 0.99]),
                true,
            ),
            (
                "any(result, {# < 0.9})",
                Measured::Numbers(vec![0.95, 0.99]),
                false,
            ),
            ("isNaN(result)", Measured::Number(f64::NAN), true),
            (
                "isNaN(result) || result >= 0.9",
                Measured::Number(0.5),
                false,
            ),
        ];
        for (text, result, want) in cases {
            assert_eq!(evaluate(text, &result), Ok(want), "{text} with {result:?}");
        }
    }

    #[test]
    fn values_are_recorded_as_argo_shows_them() {
        assert_eq!(Measured::Number(0.5).text(), "0.5");
        assert_eq!(Measured::Numbers(vec![1.0, f64::NAN]).text(), "[1,NaN]");
        assert_eq!(Measured::Json(json!({"ok": true})).text(), r#"{"ok":true}"#);
    }

    #[test]
    fn non_bool_and_bad_expressions_are_errors() {
        let err = evaluate("result + 1", &Measured::Number(1.0)).unwrap_err();
        assert!(err.contains("not true or false"), "{err}");
        assert!(compile("result >=").is_err());
        assert!(compile("result[0] >= 0.95").is_ok());
    }
}
