//! Go `text/template`, as Loki's `line_format` and `label_format` run it: the labels are the
//! data (`{{ .level }}`, a missing one is ""), with `if`/`else if`/`else`/`with`, pipelines
//! (`{{ .msg | trunc 20 | upper }}`), parenthesized calls, Go's comparison and logic functions,
//! `printf`, and the functions Loki registers (its own, such as `__line__`, `__timestamp__`,
//! `regexReplaceAll` and `alignLeft`, and the Sprig ones it picks: `date`, `add`, `b64enc`,
//! `fromJson`, …). Variables (`{{ $x := .a }}`, `{{ $x = … }}`, `$` for the labels) and
//! `range` (over the labels, a `fromJson` object or array, or a count, with `break`,
//! `continue` and `else`) follow Go's scoping: a variable lives to the `end` of the block it is
//! declared in.
//!
//! A template that does not parse, or uses what is not implemented here (`define`, `template`,
//! `block`), is refused when the query is parsed. An error while rendering one
//! entry (`div` by zero, `lt` between a string and a number, more than [`MAX_STEPS`] actions)
//! is that entry's: the pipeline marks it `__error__="TemplateFormatErr"`, as Loki does.
//!
//! Written from the behaviour documented for Go's `text/template` and `fmt`, Sprig and Loki;
//! `gtmpl` (the Rust port of Go templates) was evaluated and not used: it loops forever on an
//! unclosed action, fails on missing map keys and gets `printf` widths and `eq` with several
//! arguments wrong.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use regex::Regex;

use super::pipeline::LabelMap;

/// A parsed template: its nodes and the templates it defines (`define`, `block`).
#[derive(Clone, Debug)]
pub struct Template(Vec<Node>, Arc<BTreeMap<String, Vec<Node>>>);

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    /// `if`, its `else if`s, and the `else` body.
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    /// `with`: the body runs with the value as the dot when it is not empty.
    With(Pipe, Vec<Node>, Vec<Node>),
    /// `range`: the body runs once per element with it as the dot (the `else` body when there
    /// is none); the pipe's variables are the element, or the key (index) and the element.
    Range(Pipe, Vec<Node>, Vec<Node>),
    /// `break` and `continue` (only inside a `range`).
    Break,
    Continue,
    /// `{{template "name" pipeline}}`: runs a defined template with the value as the dot (nil
    /// without a pipeline).
    Call(String, Option<Pipe>),
    /// `{{define "name"}}…{{end}}` while parsing; moved into the template's definitions.
    Define(String, Vec<Node>),
}

/// Commands separated by `|`; each command after the first gets the value before it as its
/// last argument. `decl` names the variables the pipe declares (`$x :=`), or the one it sets
/// when `assign` (`$x =`).
#[derive(Clone, Debug)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    commands: Vec<Command>,
}

#[derive(Clone, Debug)]
enum Command {
    Call(Func, Vec<Arg>),
    Operand(Arg),
}

#[derive(Clone, Debug)]
enum Arg {
    Dot,
    /// `.a` (or `.a.b`, which fails at run time on a label).
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Sub(Box<Pipe>),
    /// `$x`, `$x.a.b`, `$` (the labels).
    Var(String, Vec<String>),
    /// `(pipe).a.b`: fields of a value.
    Chain(Box<Arg>, Vec<String>),
    /// A function named as an argument is called without arguments (`date "15:04" now`).
    Niladic(Func),
}

/// A value while the template runs.
#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    /// The labels (the dot at the top).
    Labels,
    /// A JSON object (`fromJson`), in key order as Go ranges and prints maps.
    Map(Arc<BTreeMap<String, Val>>),
    /// A JSON array.
    List(Arc<Vec<Val>>),
    /// Go's nil: a JSON null, a missing key of an object, what `fromJson` makes of bad JSON.
    Nil,
}

/// What a template sees of its entry.
struct Scope<'a> {
    labels: &'a LabelMap,
    line: &'a str,
    ts_nanos: i64,
    defs: &'a BTreeMap<String, Vec<Node>>,
}

macro_rules! funcs {
    ($($variant:ident = $name:literal / $arity:expr,)*) => {
        /// A function a template can call.
        #[derive(Clone, Debug)]
        enum Func {
            $($variant,)*
            /// `regexReplaceAll`, `regexReplaceAllLiteral` and `count`, with the pattern
            /// compiled when it is a literal.
            Regex(RegexFn, Option<Regex>),
        }

        impl Func {
            fn lookup(name: &str) -> Option<Func> {
                Some(match name {
                    $($name => Func::$variant,)*
                    "regexReplaceAll" => Func::Regex(RegexFn::Replace, None),
                    "regexReplaceAllLiteral" => Func::Regex(RegexFn::ReplaceLiteral, None),
                    "count" => Func::Regex(RegexFn::Count, None),
                    _ => return None,
                })
            }

            fn name(&self) -> &'static str {
                match self {
                    $(Func::$variant => $name,)*
                    Func::Regex(RegexFn::Replace, _) => "regexReplaceAll",
                    Func::Regex(RegexFn::ReplaceLiteral, _) => "regexReplaceAllLiteral",
                    Func::Regex(RegexFn::Count, _) => "count",
                }
            }

            /// How many arguments it takes: (least, most).
            fn arity(&self) -> (usize, usize) {
                match self {
                    $(Func::$variant => $arity,)*
                    Func::Regex(RegexFn::Count, _) => (2, 2),
                    Func::Regex(..) => (3, 3),
                }
            }
        }
    };
}

const ANY: usize = usize::MAX;

funcs! {
    Line = "__line__" / (0, 0),
    Timestamp = "__timestamp__" / (0, 0),
    And = "and" / (1, ANY),
    Or = "or" / (1, ANY),
    Not = "not" / (1, 1),
    Len = "len" / (1, 1),
    Index = "index" / (2, 2),
    Print = "print" / (0, ANY),
    Printf = "printf" / (1, ANY),
    Println = "println" / (0, ANY),
    UrlQuery = "urlquery" / (0, ANY),
    Eq = "eq" / (2, ANY),
    Ne = "ne" / (2, 2),
    Lt = "lt" / (2, 2),
    Le = "le" / (2, 2),
    Gt = "gt" / (2, 2),
    Ge = "ge" / (2, 2),
    ToLower = "ToLower" / (1, 1),
    ToUpper = "ToUpper" / (1, 1),
    Replace = "Replace" / (4, 4),
    Trim = "Trim" / (2, 2),
    TrimLeft = "TrimLeft" / (2, 2),
    TrimRight = "TrimRight" / (2, 2),
    TrimPrefix = "TrimPrefix" / (2, 2),
    TrimSuffix = "TrimSuffix" / (2, 2),
    TrimSpace = "TrimSpace" / (1, 1),
    UrlDecode = "urldecode" / (1, 1),
    UrlEncode = "urlencode" / (1, 1),
    Bytes = "bytes" / (1, 1),
    Duration = "duration" / (1, 1),
    DurationSeconds = "duration_seconds" / (1, 1),
    UnixEpoch = "unixEpoch" / (1, 1),
    UnixEpochMillis = "unixEpochMillis" / (1, 1),
    UnixEpochNanos = "unixEpochNanos" / (1, 1),
    UnixToTime = "unixToTime" / (1, 1),
    AlignLeft = "alignLeft" / (2, 2),
    AlignRight = "alignRight" / (2, 2),
    B64Enc = "b64enc" / (1, 1),
    B64Dec = "b64dec" / (1, 1),
    Lower = "lower" / (1, 1),
    Upper = "upper" / (1, 1),
    Title = "title" / (1, 1),
    Trunc = "trunc" / (2, 2),
    Substr = "substr" / (3, 3),
    Contains = "contains" / (2, 2),
    HasPrefix = "hasPrefix" / (2, 2),
    HasSuffix = "hasSuffix" / (2, 2),
    Indent = "indent" / (2, 2),
    Nindent = "nindent" / (2, 2),
    SprigReplace = "replace" / (3, 3),
    Repeat = "repeat" / (2, 2),
    SprigTrim = "trim" / (1, 1),
    TrimAll = "trimAll" / (2, 2),
    SprigTrimSuffix = "trimSuffix" / (2, 2),
    SprigTrimPrefix = "trimPrefix" / (2, 2),
    Int = "int" / (1, 1),
    Float64 = "float64" / (1, 1),
    Add = "add" / (1, ANY),
    Sub = "sub" / (2, 2),
    Mul = "mul" / (1, ANY),
    Div = "div" / (2, 2),
    Mod = "mod" / (2, 2),
    Addf = "addf" / (1, ANY),
    Subf = "subf" / (1, ANY),
    Mulf = "mulf" / (1, ANY),
    Divf = "divf" / (1, ANY),
    Max = "max" / (1, ANY),
    Min = "min" / (1, ANY),
    Maxf = "maxf" / (1, ANY),
    Minf = "minf" / (1, ANY),
    Ceil = "ceil" / (1, 1),
    Floor = "floor" / (1, 1),
    Round = "round" / (2, 3),
    Date = "date" / (2, 2),
    ToDate = "toDate" / (2, 2),
    Now = "now" / (0, 0),
    Default = "default" / (1, 2),
    FromJson = "fromJson" / (1, 1),
    ToDateInZone = "toDateInZone" / (3, 3),
}

#[derive(Clone, Copy, Debug)]
enum RegexFn {
    Replace,
    ReplaceLiteral,
    Count,
}

/// Functions Loki has that this engine refuses by name.
const NOT_IMPLEMENTED: &[&str] = &["html", "js", "slice", "call"];

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Dot,
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Pipe,
    Open,
    Close,
    Var(String),
    /// `.a.b` right after a `)`.
    Chain(Vec<String>),
    Declare,
    Assign,
    Comma,
}

fn tokens(action: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    let word_end = |mut j: usize| {
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '.') {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '"' | '`' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    let Some(&d) = chars.get(j) else {
                        return Err(format!("unterminated quoted string in {{{{{action}}}}}"));
                    };
                    j += 1;
                    if d == c {
                        break;
                    }
                    if d == '\\' && c == '"' {
                        let e = chars.get(j).copied().ok_or("unterminated quoted string")?;
                        j += 1;
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            '\\' | '"' | '\'' => s.push(e),
                            'x' | 'u' | 'U' => {
                                let n = match e { 'x' => 2, 'u' => 4, _ => 8 };
                                let hex: String = chars.get(j..j + n).map(|h| h.iter().collect()).unwrap_or_default();
                                let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                                s.push(ch.ok_or_else(|| format!("invalid escape \\{e}{hex} in {{{{{action}}}}}"))?);
                                j += n;
                            }
                            _ => return Err(format!("unknown escape sequence \\{e} in {{{{{action}}}}}")),
                        }
                    } else {
                        s.push(d);
                    }
                }
                out.push(Token::Str(s));
                i = j;
            }
            '.' => {
                let j = word_end(i + 1);
                let path: String = chars[i + 1..j].iter().collect();
                if path.is_empty() {
                    out.push(Token::Dot);
                } else {
                    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
                    if parts.iter().any(String::is_empty) {
                        return Err(format!("bad field .{path} in {{{{{action}}}}}"));
                    }
                    out.push(if i > 0 && chars[i - 1] == ')' { Token::Chain(parts) } else { Token::Field(parts) });
                }
                i = j;
            }
            '$' => {
                let j = word_end(i + 1);
                out.push(Token::Var(chars[i..j].iter().collect()));
                i = j;
            }
            _ if c.is_ascii_digit() || ((c == '-' || c == '+') && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == '_'
                    || ((chars[j] == '-' || chars[j] == '+') && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                out.push(Token::Num(chars[i..j].iter().collect()));
                i = j;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push(Token::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Declare);
                i += 2;
            }
            '=' => {
                out.push(Token::Assign);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            _ => return Err(format!("unexpected {c:?} in {{{{{action}}}}}")),
        }
    }
    Ok(out)
}

fn number(text: &str) -> Result<Arg, String> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let radix = |prefix: &str, radix: u32| {
        digits
            .strip_prefix(prefix)
            .or_else(|| digits.strip_prefix(&prefix.to_uppercase()))
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    let int = radix("0x", 16).or_else(|| radix("0o", 8)).or_else(|| radix("0b", 2)).or_else(|| digits.parse::<i64>().ok());
    if let Some(n) = int {
        return Ok(Arg::Int(if neg { -n } else { n }));
    }
    match digits.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Arg::Float(if neg { -f } else { f })),
        _ => Err(format!("bad number syntax: {text:?}")),
    }
}

struct PipeParser<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl PipeParser<'_> {
    fn pipe(&mut self) -> Result<Pipe, String> {
        let mut commands = Vec::new();
        loop {
            commands.push(self.command(!commands.is_empty())?);
            match self.tokens.get(self.pos) {
                Some(Token::Pipe) => self.pos += 1,
                _ => return Ok(Pipe { decl: Vec::new(), assign: false, commands }),
            }
        }
    }

    fn command(&mut self, piped: bool) -> Result<Command, String> {
        let mut words = Vec::new();
        while let Some(t) = self.tokens.get(self.pos) {
            if matches!(t, Token::Pipe | Token::Close) {
                break;
            }
            words.push(self.operand()?);
        }
        let Some((first, args)) = words.split_first() else {
            return Err("missing value for command".into());
        };
        match first {
            Arg::Niladic(f) => {
                let mut f = f.clone();
                let (least, most) = f.arity();
                let given = args.len() + usize::from(piped);
                if given < least || given > most {
                    return Err(format!("wrong number of args for {}: want {}, got {given}", f.name(), arity_text(least, most)));
                }
                if let Some(Arg::Niladic(g)) = args.iter().find(|a| matches!(a, Arg::Niladic(g) if g.arity().0 > 0)) {
                    return Err(format!("wrong number of args for {}: want {}, got 0", g.name(), arity_text(g.arity().0, g.arity().1)));
                }
                if let (Func::Regex(_, compiled), Some(Arg::Str(pattern))) = (&mut f, args.first()) {
                    *compiled = Some(Regex::new(pattern).map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))?);
                }
                Ok(Command::Call(f, args.to_vec()))
            }
            _ if !args.is_empty() => Err(format!("can't give argument to non-function {first:?}")),
            _ if piped => Err("non executable command in pipeline".into()),
            _ => Ok(Command::Operand(first.clone())),
        }
    }

    fn operand(&mut self) -> Result<Arg, String> {
        let token = self.tokens[self.pos].clone();
        self.pos += 1;
        Ok(match token {
            Token::Dot => Arg::Dot,
            Token::Field(path) => Arg::Field(path),
            Token::Str(s) => Arg::Str(s),
            Token::Num(n) => number(&n)?,
            Token::Ident(name) => match name.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => return Err("nil is not a command".into()),
                _ if NOT_IMPLEMENTED.contains(&name.as_str()) => {
                    return Err(format!("template function {name:?} is not supported yet"));
                }
                _ => Arg::Niladic(Func::lookup(&name).ok_or_else(|| format!("function {name:?} not defined"))?),
            },
            Token::Open => {
                let pipe = self.pipe()?;
                if self.tokens.get(self.pos) != Some(&Token::Close) {
                    return Err("unclosed left paren".into());
                }
                self.pos += 1;
                let mut arg = Arg::Sub(Box::new(pipe));
                if let Some(Token::Chain(path)) = self.tokens.get(self.pos) {
                    arg = Arg::Chain(Box::new(arg), path.clone());
                    self.pos += 1;
                }
                arg
            }
            Token::Close => return Err("unexpected right paren".into()),
            Token::Pipe => return Err("missing value for command".into()),
            Token::Var(v) => {
                let mut parts = v.split('.');
                let name = parts.next().unwrap_or_default().to_string();
                let path: Vec<String> = parts.map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    return Err(format!("bad variable {v}"));
                }
                Arg::Var(name, path)
            }
            Token::Chain(path) => return Err(format!("unexpected .{}", path.join("."))),
            Token::Declare | Token::Assign | Token::Comma => {
                return Err("unexpected := , or = (a declaration starts the action)".into());
            }
        })
    }
}

fn arity_text(least: usize, most: usize) -> String {
    match (least, most) {
        (l, ANY) => format!("at least {l}"),
        (l, m) if l == m => l.to_string(),
        (l, m) => format!("{l} to {m}"),
    }
}

/// The deepest nesting of parentheses, and of `if`/`with` blocks, a template may have (the
/// parser and the evaluator recurse on them).
const MAX_NESTING: usize = 64;

/// The longest text one call may make (`repeat`, `alignLeft`, `indent`, `printf` widths).
const MAX_TEXT: usize = 1 << 20;

/// How many variables a pipe may declare: `range` takes a key and an element.
#[derive(Clone, Copy, PartialEq)]
enum Decls {
    One,
    Two,
}

fn parse_pipe(action: &str) -> Result<Pipe, String> {
    parse_pipe_with(action, Decls::One)
}

fn parse_pipe_with(action: &str, most: Decls) -> Result<Pipe, String> {
    let tokens = tokens(action)?;
    // `$x :=`, `$x =`, or (in `range`) `$k, $v :=` before the commands.
    let plain_var = |t: Option<&Token>| match t {
        Some(Token::Var(v)) if v != "$" && !v.contains('.') => Some(v.clone()),
        _ => None,
    };
    let (decl, assign, skip) = match (plain_var(tokens.first()), tokens.get(1)) {
        (Some(v), Some(Token::Declare)) => (vec![v], false, 2),
        (Some(v), Some(Token::Assign)) => (vec![v], true, 2),
        (Some(k), Some(Token::Comma)) => match (plain_var(tokens.get(2)), tokens.get(3)) {
            (Some(v), Some(Token::Declare | Token::Assign)) if most == Decls::Two => (vec![k, v], false, 4),
            (Some(_), Some(Token::Declare | Token::Assign)) => {
                return Err(format!("too many declarations in {{{{{action}}}}}"));
            }
            _ => return Err(format!("bad declaration in {{{{{action}}}}}")),
        },
        _ => (Vec::new(), false, 0),
    };
    let tokens = &tokens[skip..];
    let mut depth = 0usize;
    for t in tokens {
        match t {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!("parentheses nested deeper than {MAX_NESTING}"));
        }
    }
    let mut p = PipeParser { tokens, pos: 0 };
    let mut pipe = p.pipe()?;
    if p.pos != tokens.len() {
        return Err(format!("unexpected {:?} in {{{{{action}}}}}", tokens[p.pos]));
    }
    pipe.decl = decl;
    pipe.assign = assign;
    Ok(pipe)
}

/// What a `{{ … }}` holds, for the block structure.
enum Piece {
    Node(Node),
    If(Pipe),
    With(Pipe),
    Range(Pipe),
    ElseIf(Pipe),
    /// `else with` (Go 1.23): the `else` body is another `with`, ending at the same `end`.
    ElseWith(Pipe),
    Else,
    End,
    /// `define "name"`: a body up to its `end`.
    Define(String),
    /// `block "name" pipeline`: `define` and `template` at once.
    Block(String, Pipe),
}

/// The quoted template name at the start of an action's `body` and the rest after it.
fn template_name<'a>(body: &'a str, keyword: &str) -> Result<(String, &'a str), String> {
    let b = body.trim_start();
    let bytes = b.as_bytes();
    let end = match bytes.first() {
        Some(b'`') => b[1..].find('`').map(|i| i + 2),
        Some(b'"') => {
            let mut i = 1;
            loop {
                match bytes.get(i) {
                    None => break None,
                    Some(b'\\') => i += 2,
                    Some(b'"') => break Some(i + 1),
                    Some(_) => i += 1,
                }
            }
        }
        _ => None,
    };
    let missing = || format!("{{{{{keyword}}}}} needs a quoted template name");
    let end = end.ok_or_else(missing)?;
    match parse_pipe(&b[..end])?.commands.as_slice() {
        [Command::Operand(Arg::Str(name))] => Ok((name.clone(), b[end..].trim())),
        _ => Err(missing()),
    }
}

/// Moves every `define` in `nodes` (also those inside other actions, as a `block` puts them)
/// into `defs`.
fn take_definitions(nodes: &mut Vec<Node>, defs: &mut BTreeMap<String, Vec<Node>>) -> Result<(), String> {
    let mut kept = Vec::with_capacity(nodes.len());
    for mut node in std::mem::take(nodes) {
        match &mut node {
            Node::Define(name, body) => {
                take_definitions(body, defs)?;
                if defs.insert(name.clone(), std::mem::take(body)).is_some() {
                    return Err(format!("template: multiple definition of template {name:?}"));
                }
                continue;
            }
            Node::If(branches, otherwise) => {
                for (_, body) in branches.iter_mut() {
                    take_definitions(body, defs)?;
                }
                take_definitions(otherwise, defs)?;
            }
            Node::With(_, body, otherwise) | Node::Range(_, body, otherwise) => {
                take_definitions(body, defs)?;
                take_definitions(otherwise, defs)?;
            }
            _ => {}
        }
        kept.push(node);
    }
    *nodes = kept;
    Ok(())
}

impl Template {
    /// Parses `src`; the error says what is wrong or not supported.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let (after, trim_before) = match after.strip_prefix("- ") {
                Some(a) => (a, true),
                None => (after, after.starts_with("-\t") || after.starts_with("-\n")),
            };
            if trim_before {
                text = text.trim_end();
            }
            if !text.is_empty() {
                pieces.push(Piece::Node(Node::Text(text.to_string())));
            }
            let close = find_close(after).ok_or_else(|| format!("invalid template {src:?}: unclosed action"))?;
            let mut action = &after[..close];
            trim_next = false;
            if let Some(a) = action.strip_suffix(" -").or_else(|| action.strip_suffix("\t-")).or_else(|| action.strip_suffix("\n-")) {
                action = a;
                trim_next = true;
            }
            rest = &after[close + 2..];
            let action = action.trim();
            if action.starts_with("/*") && action.ends_with("*/") {
                continue;
            }
            let (keyword, body) = action.split_once(char::is_whitespace).unwrap_or((action, ""));
            pieces.push(match keyword {
                "if" => Piece::If(parse_pipe(body)?),
                "with" => Piece::With(parse_pipe(body)?),
                "else" if body.trim().is_empty() => Piece::Else,
                "else" => match body.trim().split_once(char::is_whitespace) {
                    Some(("if", cond)) => Piece::ElseIf(parse_pipe(cond)?),
                    Some(("with", value)) => Piece::ElseWith(parse_pipe(value)?),
                    _ => return Err(format!("{{{{{action}}}}} is not supported yet")),
                },
                "end" => Piece::End,
                "range" => Piece::Range(parse_pipe_with(body, Decls::Two)?),
                "break" if body.trim().is_empty() => Piece::Node(Node::Break),
                "continue" if body.trim().is_empty() => Piece::Node(Node::Continue),
                "define" => {
                    let (name, rest) = template_name(body, keyword)?;
                    if !rest.is_empty() {
                        return Err(format!("{{{{define}}}} takes only a name, not {rest:?}"));
                    }
                    Piece::Define(name)
                }
                "template" => {
                    let (name, rest) = template_name(body, keyword)?;
                    Piece::Node(Node::Call(name, if rest.is_empty() { None } else { Some(parse_pipe(rest)?) }))
                }
                "block" => {
                    let (name, rest) = template_name(body, keyword)?;
                    if rest.is_empty() {
                        return Err("{{block}} needs a pipeline after its name".to_string());
                    }
                    Piece::Block(name, parse_pipe(rest)?)
                }
                _ => Piece::Node(Node::Action(parse_pipe(action)?)),
            });
        }
        let mut text = rest;
        if trim_next {
            text = text.trim_start();
        }
        if !text.is_empty() {
            pieces.push(Piece::Node(Node::Text(text.to_string())));
        }
        let mut depth = 0usize;
        for piece in &pieces {
            match piece {
                Piece::If(_) | Piece::With(_) | Piece::Range(_) | Piece::Define(_) | Piece::Block(..) => depth += 1,
                Piece::End => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_NESTING {
                return Err(format!("{{{{if}}}}/{{{{with}}}}/{{{{range}}}} nested deeper than {MAX_NESTING}"));
            }
        }
        let mut pieces = pieces.into_iter();
        let (mut nodes, stop) = block(&mut pieces)?;
        match stop {
            None => {
                let mut defs = BTreeMap::new();
                take_definitions(&mut nodes, &mut defs)?;
                check_scopes(&nodes, &mut vec!["$".to_string()], false)?;
                for body in defs.values() {
                    check_scopes(body, &mut vec!["$".to_string()], false)?;
                }
                if let Some(name) = called(&nodes).chain(defs.values().flat_map(|b| called(b))).find(|n| !defs.contains_key(*n)) {
                    return Err(format!("template: no template {name:?} is defined"));
                }
                Ok(Template(nodes, Arc::new(defs)))
            }
            Some(_) => Err(format!("invalid template {src:?}: unexpected {{{{end}}}} or {{{{else}}}}")),
        }
    }

    /// Renders the template for one entry; an error is the entry's (`TemplateFormatErr`).
    pub fn render(&self, labels: &LabelMap, line: &str, ts_nanos: i64) -> Result<String, String> {
        let scope = Scope { labels, line, ts_nanos, defs: &self.1 };
        let mut state = State { vars: vec![("$".to_string(), Val::Labels)], steps: 0, depth: 0 };
        let mut out = String::new();
        run(&self.0, &scope, &mut state, &Val::Labels, &mut out)?;
        Ok(out)
    }
}

/// The offset of the `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote = None;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == b'\\' && q == b'"' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'`' => quote = Some(c),
            None if c == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// The names of the templates `nodes` call, at any depth.
fn called(nodes: &[Node]) -> Box<dyn Iterator<Item = &String> + '_> {
    Box::new(nodes.iter().flat_map(|n| -> Box<dyn Iterator<Item = &String> + '_> {
        match n {
            Node::Call(name, _) => Box::new(std::iter::once(name)),
            Node::If(branches, otherwise) => Box::new(branches.iter().flat_map(|(_, b)| called(b)).chain(called(otherwise))),
            Node::With(_, body, otherwise) | Node::Range(_, body, otherwise) => Box::new(called(body).chain(called(otherwise))),
            Node::Define(_, body) => called(body),
            _ => Box::new(std::iter::empty()),
        }
    }))
}

/// Nodes up to the `else`/`end` that ends the block (None at the end of the template).
fn block(pieces: &mut impl Iterator<Item = Piece>) -> Result<(Vec<Node>, Option<Piece>), String> {
    let mut nodes = Vec::new();
    while let Some(piece) = pieces.next() {
        match piece {
            Piece::Node(n) => nodes.push(n),
            Piece::If(cond) => nodes.push(if_chain(cond, pieces)?),
            Piece::With(pipe) => {
                let (body, otherwise) = body_and_else(pieces, "with")?;
                nodes.push(Node::With(pipe, body, otherwise));
            }
            Piece::Range(pipe) => {
                let (body, otherwise) = body_and_else(pieces, "range")?;
                nodes.push(Node::Range(pipe, body, otherwise));
            }
            Piece::Define(name) => match block(pieces)? {
                (body, Some(Piece::End)) => nodes.push(Node::Define(name, body)),
                _ => return Err("unterminated {{define}}".to_string()),
            },
            Piece::Block(name, pipe) => match block(pieces)? {
                (body, Some(Piece::End)) => {
                    nodes.push(Node::Define(name.clone(), body));
                    nodes.push(Node::Call(name, Some(pipe)));
                }
                _ => return Err("unterminated {{block}}".to_string()),
            },
            stop @ (Piece::Else | Piece::ElseIf(_) | Piece::ElseWith(_) | Piece::End) => return Ok((nodes, Some(stop))),
        }
    }
    Ok((nodes, None))
}

/// The body of a `with` or `range` and its `else` body (empty when there is none).
fn body_and_else(pieces: &mut impl Iterator<Item = Piece>, keyword: &str) -> Result<(Vec<Node>, Vec<Node>), String> {
    let (body, stop) = block(pieces)?;
    let otherwise = match stop {
        Some(Piece::End) => Vec::new(),
        Some(Piece::Else) => match block(pieces)? {
            (otherwise, Some(Piece::End)) => otherwise,
            _ => return Err(format!("unterminated {{{{{keyword}}}}}")),
        },
        // `{{ with a }}…{{ else with b }}…{{ end }}` is `with a` whose else body is `with b`.
        Some(Piece::ElseWith(pipe)) if keyword == "with" => {
            let (inner, inner_else) = body_and_else(pieces, keyword)?;
            vec![Node::With(pipe, inner, inner_else)]
        }
        _ => return Err(format!("unterminated {{{{{keyword}}}}}")),
    };
    Ok((body, otherwise))
}

/// Go's checks when a template is parsed: every variable is declared before it is used, in
/// its block or one around it, and `break`/`continue` are inside a `range`.
fn check_scopes(nodes: &[Node], vars: &mut Vec<String>, in_range: bool) -> Result<(), String> {
    fn check_arg(arg: &Arg, vars: &[String]) -> Result<(), String> {
        match arg {
            Arg::Var(name, _) if !vars.contains(name) => Err(format!("undefined variable \"{name}\"")),
            Arg::Sub(pipe) => check_commands(pipe, vars),
            Arg::Chain(inner, _) => check_arg(inner, vars),
            _ => Ok(()),
        }
    }
    fn check_commands(pipe: &Pipe, vars: &[String]) -> Result<(), String> {
        for command in &pipe.commands {
            match command {
                Command::Operand(arg) => check_arg(arg, vars)?,
                Command::Call(_, args) => args.iter().try_for_each(|a| check_arg(a, vars))?,
            }
        }
        Ok(())
    }
    // Checks the pipe and declares its variables (an assignment needs one already).
    fn check_pipe(pipe: &Pipe, vars: &mut Vec<String>) -> Result<(), String> {
        check_commands(pipe, vars)?;
        if pipe.assign {
            if let Some(name) = pipe.decl.iter().find(|n| !vars.contains(n)) {
                return Err(format!("undefined variable \"{name}\""));
            }
        } else {
            vars.extend(pipe.decl.iter().cloned());
        }
        Ok(())
    }
    for node in nodes {
        let mark = vars.len();
        match node {
            Node::Text(_) => {}
            Node::Action(pipe) => check_pipe(pipe, vars)?,
            Node::If(branches, otherwise) => {
                for (cond, body) in branches {
                    check_pipe(cond, vars)?;
                    check_scopes(body, vars, in_range)?;
                }
                check_scopes(otherwise, vars, in_range)?;
                vars.truncate(mark);
            }
            Node::With(pipe, body, otherwise) | Node::Range(pipe, body, otherwise) => {
                check_pipe(pipe, vars)?;
                check_scopes(body, vars, in_range || matches!(node, Node::Range(..)))?;
                check_scopes(otherwise, vars, in_range)?;
                vars.truncate(mark);
            }
            Node::Break | Node::Continue if !in_range => {
                let word = if matches!(node, Node::Break) { "break" } else { "continue" };
                return Err(format!("{{{{{word}}}}} outside {{{{range}}}}"));
            }
            Node::Break | Node::Continue => {}
            Node::Call(_, Some(pipe)) => check_commands(pipe, vars)?,
            Node::Call(_, None) => {}
            Node::Define(_, body) => check_scopes(body, &mut vec!["$".to_string()], false)?,
        }
    }
    Ok(())
}

fn if_chain(cond: Pipe, pieces: &mut impl Iterator<Item = Piece>) -> Result<Node, String> {
    let mut branches = Vec::new();
    let mut cond = cond;
    loop {
        let (body, stop) = block(pieces)?;
        branches.push((cond, body));
        match stop {
            Some(Piece::End) => return Ok(Node::If(branches, Vec::new())),
            Some(Piece::ElseIf(next)) => cond = next,
            Some(Piece::Else) => {
                return match block(pieces)? {
                    (otherwise, Some(Piece::End)) => Ok(Node::If(branches, otherwise)),
                    _ => Err("unterminated {{if}}".into()),
                };
            }
            _ => return Err("unterminated {{if}}".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// The variables in scope, innermost last, and the actions run so far.
struct State {
    vars: Vec<(String, Val)>,
    steps: usize,
    /// `template` calls running (a template may call itself).
    depth: usize,
}

/// Actions, `range` iterations included, one rendering may run: a `range` over a large count
/// or nested over a large array ends in an error instead of holding the query.
const MAX_STEPS: usize = 100_000;

/// How a block ended: normally, or at a `break`/`continue` of the `range` around it.
#[derive(PartialEq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

fn run(nodes: &[Node], scope: &Scope, state: &mut State, dot: &Val, out: &mut String) -> Result<Flow, String> {
    for node in nodes {
        state.steps += 1;
        if state.steps > MAX_STEPS {
            return Err(format!("the template ran more than {MAX_STEPS} actions"));
        }
        if out.len() > MAX_TEXT {
            return Err(format!("the template's output is longer than {MAX_TEXT} bytes"));
        }
        let flow = match node {
            Node::Text(t) => {
                out.push_str(t);
                Flow::Normal
            }
            Node::Action(pipe) => {
                let v = eval_pipe(pipe, scope, state, dot)?;
                if pipe.decl.is_empty() {
                    print_value(&v, scope, out);
                }
                Flow::Normal
            }
            Node::Break => Flow::Break,
            Node::Continue => Flow::Continue,
            Node::Call(name, pipe) => {
                let body = scope.defs.get(name).ok_or_else(|| format!("template: no template {name:?} is defined"))?;
                let v = match pipe {
                    Some(p) => eval_pipe(p, scope, state, dot)?,
                    None => Val::Nil,
                };
                if state.depth >= MAX_NESTING {
                    return Err(format!("template calls nested deeper than {MAX_NESTING}"));
                }
                // The called template sees only its own variables, `$` being its dot.
                let outer = std::mem::replace(&mut state.vars, vec![("$".to_string(), v.clone())]);
                state.depth += 1;
                let flow = run(body, scope, state, &v, out);
                state.depth -= 1;
                state.vars = outer;
                flow?;
                Flow::Normal
            }
            Node::Define(..) => Flow::Normal,
            Node::If(branches, otherwise) => {
                let mark = state.vars.len();
                let mut taken = None;
                for (cond, body) in branches {
                    if truthy(&eval_pipe(cond, scope, state, dot)?, scope) {
                        taken = Some(body);
                        break;
                    }
                }
                let flow = run(taken.unwrap_or(otherwise), scope, state, dot, out);
                state.vars.truncate(mark);
                flow?
            }
            Node::With(pipe, body, otherwise) => {
                let mark = state.vars.len();
                let v = eval_pipe(pipe, scope, state, dot)?;
                let flow = if truthy(&v, scope) { run(body, scope, state, &v, out) } else { run(otherwise, scope, state, dot, out) };
                state.vars.truncate(mark);
                flow?
            }
            Node::Range(pipe, body, otherwise) => {
                let mark = state.vars.len();
                let flow = run_range(pipe, body, otherwise, scope, state, dot, out);
                state.vars.truncate(mark);
                flow?
            }
        };
        if flow != Flow::Normal {
            return Ok(flow);
        }
    }
    Ok(Flow::Normal)
}

/// `range`: over the labels or an object (keys in order), an array, or a count (0 to n-1, as
/// Go 1.22 does); nil is empty, like a nil map.
fn run_range(
    pipe: &Pipe,
    body: &[Node],
    otherwise: &[Node],
    scope: &Scope,
    state: &mut State,
    dot: &Val,
    out: &mut String,
) -> Result<Flow, String> {
    let value = eval_commands(&pipe.commands, scope, state, dot)?;
    let items: Box<dyn Iterator<Item = (Val, Val)> + '_> = match &value {
        Val::Labels => Box::new(scope.labels.iter().map(|(k, v)| (Val::Str(k.clone()), Val::Str(v.clone())))),
        Val::Map(m) => Box::new(m.iter().map(|(k, v)| (Val::Str(k.clone()), v.clone()))),
        Val::List(l) => Box::new(l.iter().enumerate().map(|(i, v)| (Val::Int(i as i64), v.clone()))),
        Val::Int(n) if pipe.decl.len() < 2 => Box::new((0..(*n).max(0)).map(|i| (Val::Int(i), Val::Int(i)))),
        Val::Int(_) => return Err("can't use a count to iterate over more than one variable".into()),
        Val::Nil => Box::new(std::iter::empty()),
        other => return Err(format!("range can't iterate over {}", to_text(other, scope))),
    };
    let mark = state.vars.len();
    let mut empty = true;
    for (key, element) in items {
        empty = false;
        state.steps += 1;
        if state.steps > MAX_STEPS {
            return Err(format!("the template ran more than {MAX_STEPS} actions"));
        }
        state.vars.truncate(mark);
        match pipe.decl.as_slice() {
            [] => {}
            [v] => set_var(state, v, element.clone(), pipe.assign),
            [k, v, ..] => {
                set_var(state, k, key, pipe.assign);
                set_var(state, v, element.clone(), pipe.assign);
            }
        }
        if run(body, scope, state, &element, out)? == Flow::Break {
            break;
        }
    }
    if empty {
        return run(otherwise, scope, state, dot, out);
    }
    Ok(Flow::Normal)
}

/// Declares `name` (or, when `assign`, sets the innermost variable of that name).
fn set_var(state: &mut State, name: &str, value: Val, assign: bool) {
    if assign && let Some(slot) = state.vars.iter_mut().rev().find(|(n, _)| n == name) {
        slot.1 = value;
        return;
    }
    state.vars.push((name.to_string(), value));
}

/// The pipe's value, after declaring (or setting) its variable.
fn eval_pipe(pipe: &Pipe, scope: &Scope, state: &mut State, dot: &Val) -> Result<Val, String> {
    let value = eval_commands(&pipe.commands, scope, state, dot)?;
    if let [name] = pipe.decl.as_slice() {
        set_var(state, name, value.clone(), pipe.assign);
    }
    Ok(value)
}

fn eval_commands(commands: &[Command], scope: &Scope, state: &mut State, dot: &Val) -> Result<Val, String> {
    let mut value: Option<Val> = None;
    for command in commands {
        value = Some(match command {
            Command::Operand(arg) => eval_arg(arg, scope, state, dot)?,
            Command::Call(f, args) => {
                let mut vals = args.iter().map(|a| eval_arg(a, scope, state, dot)).collect::<Result<Vec<_>, _>>()?;
                vals.extend(value.take());
                call(f, vals, scope).map_err(|e| format!("error calling {}: {e}", f.name()))?
            }
        });
    }
    value.ok_or_else(|| "empty pipeline".to_string())
}

/// `value.a.b`: a label of the labels, a member of an object (nil when it has none).
fn fields(mut value: Val, path: &[String], scope: &Scope) -> Result<Val, String> {
    for name in path {
        value = match value {
            Val::Labels => Val::Str(scope.labels.get(name).cloned().unwrap_or_default()),
            Val::Map(m) => m.get(name).cloned().unwrap_or(Val::Nil),
            Val::Nil => return Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => return Err(format!("can't evaluate field {name} in type {}", type_name(&other))),
        };
    }
    Ok(value)
}

fn eval_arg(arg: &Arg, scope: &Scope, state: &mut State, dot: &Val) -> Result<Val, String> {
    Ok(match arg {
        Arg::Dot => dot.clone(),
        Arg::Field(path) => fields(dot.clone(), path, scope)?,
        Arg::Var(name, path) => {
            let value = state.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            fields(value.ok_or_else(|| format!("undefined variable {name}"))?, path, scope)?
        }
        Arg::Chain(inner, path) => fields(eval_arg(inner, scope, state, dot)?, path, scope)?,
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Int(i) => Val::Int(*i),
        Arg::Float(f) => Val::Float(*f),
        Arg::Bool(b) => Val::Bool(*b),
        Arg::Sub(pipe) => eval_pipe(pipe, scope, state, dot)?,
        Arg::Niladic(f) => call(f, Vec::new(), scope).map_err(|e| format!("error calling {}: {e}", f.name()))?,
    })
}

/// What Go's `json.Unmarshal` into an `interface{}` makes of JSON: objects, arrays, float64
/// numbers, strings, bools and nil.
fn from_json(v: serde_json::Value) -> Val {
    match v {
        serde_json::Value::Null => Val::Nil,
        serde_json::Value::Bool(b) => Val::Bool(b),
        serde_json::Value::Number(n) => Val::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Val::Str(s),
        serde_json::Value::Array(a) => Val::List(Arc::new(a.into_iter().map(from_json).collect())),
        serde_json::Value::Object(o) => Val::Map(Arc::new(o.into_iter().map(|(k, v)| (k, from_json(v))).collect())),
    }
}

fn truthy(v: &Val, scope: &Scope) -> bool {
    match v {
        Val::Str(s) => !s.is_empty(),
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0,
        Val::Bool(b) => *b,
        Val::Time(_) => true,
        Val::Labels => !scope.labels.is_empty(),
        Val::Map(m) => !m.is_empty(),
        Val::List(l) => !l.is_empty(),
        Val::Nil => false,
    }
}

fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Str(_) => "string",
        Val::Int(_) => "int",
        Val::Float(_) => "float64",
        Val::Bool(_) => "bool",
        Val::Time(_) => "time.Time",
        Val::Labels => "map[string]string",
        Val::Map(_) => "map[string]interface {}",
        Val::List(_) => "[]interface {}",
        Val::Nil => "nil",
    }
}

/// Go's `%v`.
fn print_value(v: &Val, scope: &Scope, out: &mut String) {
    match v {
        Val::Str(s) => out.push_str(s),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Float(f) => out.push_str(&go_float(*f, 'g', None)),
        Val::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Val::Time(t) => out.push_str(&go_time_string(t)),
        Val::Labels => {
            out.push_str("map[");
            for (i, (k, v)) in scope.labels.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:{v}");
            }
            out.push(']');
        }
        Val::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:");
                print_nested(v, scope, out);
            }
            out.push(']');
        }
        Val::List(l) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_nested(v, scope, out);
            }
            out.push(']');
        }
        Val::Nil => out.push_str("<no value>"),
    }
}

/// `%v` of a value inside an object or array, or given to `print`: nil is `<nil>` there, as
/// Go's fmt prints it (`<no value>` is the template's own word for it in an action).
fn print_nested(v: &Val, scope: &Scope, out: &mut String) {
    match v {
        Val::Nil => out.push_str("<nil>"),
        v => print_value(v, scope, out),
    }
}

fn to_text(v: &Val, scope: &Scope) -> String {
    let mut s = String::new();
    print_value(v, scope, &mut s);
    s
}

/// `fmt.Sprint`: the values' `%v`, with a space between two operands when neither is a string.
fn go_sprint(args: &[Val], scope: &Scope) -> String {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 && !matches!(v, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        print_nested(v, scope, &mut out);
    }
    out
}

/// `time.Time.String()`: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time_string(t: &DateTime<Utc>) -> String {
    format_go_layout(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

fn want_str<'v>(v: &'v Val, what: &str) -> Result<&'v str, String> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(format!("wrong type for value; expected string; got {} ({what})", type_name(other))),
    }
}

fn want_int(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(format!("wrong type for value; expected int; got {}", type_name(other))),
    }
}

fn want_time(v: &Val) -> Result<DateTime<Utc>, String> {
    match v {
        Val::Time(t) => Ok(*t),
        other => Err(format!("wrong type for value; expected time.Time; got {}", type_name(other))),
    }
}

/// Sprig's loose conversion to an integer (a string that does not parse is 0).
fn loose_int(v: &Val) -> i64 {
    match v {
        Val::Int(i) => *i,
        Val::Float(f) => *f as i64,
        Val::Bool(b) => i64::from(*b),
        // cast.ToInt64: an integer (0x, 0o, 0b prefixes allowed; "3.0" reads as 3), else 0.
        Val::Str(s) => {
            let s = s.trim();
            let s = match s.split_once('.') {
                Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
                _ => s,
            };
            match number(s) {
                Ok(Arg::Int(i)) => i,
                _ => 0,
            }
        }
        Val::Time(_) | Val::Labels | Val::Map(_) | Val::List(_) | Val::Nil => 0,
    }
}

/// Sprig's loose conversion to a float (a string that does not parse is 0).
fn loose_float(v: &Val) -> f64 {
    match v {
        Val::Int(i) => *i as f64,
        Val::Float(f) => *f,
        Val::Bool(b) => f64::from(u8::from(*b)),
        Val::Str(s) => s.trim().parse::<f64>().unwrap_or(0.0),
        Val::Time(_) | Val::Labels | Val::Map(_) | Val::List(_) | Val::Nil => 0.0,
    }
}

fn runes(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn call(f: &Func, args: Vec<Val>, scope: &Scope) -> Result<Val, String> {
    let s = |i: usize| want_str(&args[i], f.name());
    let text = |v: String| Ok(Val::Str(v));
    match f {
        Func::Line => text(scope.line.to_string()),
        Func::Timestamp => Ok(Val::Time(Utc.timestamp_nanos(scope.ts_nanos))),
        Func::Now => Ok(Val::Time(Utc::now())),
        Func::And => Ok(args.iter().find(|v| !truthy(v, scope)).unwrap_or(args.last().expect("arity")).clone()),
        Func::Or => Ok(args.iter().find(|v| truthy(v, scope)).unwrap_or(args.last().expect("arity")).clone()),
        Func::Not => Ok(Val::Bool(!truthy(&args[0], scope))),
        Func::Len => match &args[0] {
            Val::Str(s) => Ok(Val::Int(s.len() as i64)),
            Val::Labels => Ok(Val::Int(scope.labels.len() as i64)),
            Val::Map(m) => Ok(Val::Int(m.len() as i64)),
            Val::List(l) => Ok(Val::Int(l.len() as i64)),
            other => Err(format!("len of type {}", type_name(other))),
        },
        Func::Index => match (&args[0], &args[1]) {
            (Val::Labels, Val::Str(k)) => text(scope.labels.get(k).cloned().unwrap_or_default()),
            (Val::Map(m), Val::Str(k)) => Ok(m.get(k).cloned().unwrap_or(Val::Nil)),
            (Val::List(l), i) => {
                let i = want_int(i)?;
                l.get(usize::try_from(i).unwrap_or(usize::MAX)).cloned().ok_or_else(|| format!("index out of range: {i}"))
            }
            (Val::Str(s), i) => {
                let i = want_int(i)?;
                s.as_bytes().get(usize::try_from(i).unwrap_or(usize::MAX)).map(|b| Val::Int(i64::from(*b))).ok_or_else(|| format!("index out of range: {i}"))
            }
            (other, _) => Err(format!("can't index item of type {}", type_name(other))),
        },
        Func::Print => text(go_sprint(&args, scope)),
        Func::Println => text(
            args.iter()
                .map(|v| {
                    let mut s = String::new();
                    print_nested(v, scope, &mut s);
                    s
                })
                .collect::<Vec<_>>()
                .join(" ")
                + "\n",
        ),
        Func::Printf => text(go_sprintf(s(0)?, &args[1..], scope)),
        Func::UrlQuery => text(query_escape(&go_sprint(&args, scope))),
        Func::Eq => {
            for other in &args[1..] {
                if compare(&args[0], other)? == std::cmp::Ordering::Equal {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        Func::Ne => Ok(Val::Bool(compare(&args[0], &args[1])? != std::cmp::Ordering::Equal)),
        Func::Lt | Func::Le | Func::Gt | Func::Ge => {
            if matches!(args[0], Val::Bool(_)) || matches!(args[1], Val::Bool(_)) {
                return Err("invalid type for comparison".into());
            }
            let ord = compare(&args[0], &args[1])?;
            Ok(Val::Bool(match f {
                Func::Lt => ord.is_lt(),
                Func::Le => ord.is_le(),
                Func::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        Func::ToLower | Func::Lower => text(s(0)?.to_lowercase()),
        Func::ToUpper | Func::Upper => text(s(0)?.to_uppercase()),
        Func::Replace => {
            let (src, old, new, n) = (s(0)?, s(1)?, s(2)?, want_int(&args[3])?);
            text(if n < 0 { src.replace(old, new) } else { src.replacen(old, new, n as usize) })
        }
        Func::Trim => {
            let cut = s(1)?;
            text(s(0)?.trim_matches(|c| cut.contains(c)).to_string())
        }
        Func::TrimAll => {
            let cut = s(0)?;
            text(s(1)?.trim_matches(|c| cut.contains(c)).to_string())
        }
        Func::TrimLeft => {
            let cut = s(1)?;
            text(s(0)?.trim_start_matches(|c| cut.contains(c)).to_string())
        }
        Func::TrimRight => {
            let cut = s(1)?;
            text(s(0)?.trim_end_matches(|c| cut.contains(c)).to_string())
        }
        Func::TrimPrefix => text(strip(s(0)?, s(1)?, true)),
        Func::TrimSuffix => text(strip(s(0)?, s(1)?, false)),
        Func::SprigTrimPrefix => text(strip(s(1)?, s(0)?, true)),
        Func::SprigTrimSuffix => text(strip(s(1)?, s(0)?, false)),
        Func::TrimSpace | Func::SprigTrim => text(s(0)?.trim().to_string()),
        Func::UrlDecode => query_unescape(s(0)?).map(Val::Str),
        Func::UrlEncode => text(query_escape(s(0)?)),
        Func::Bytes => super::pipeline::parse_bytes(s(0)?).map(Val::Float).ok_or_else(|| format!("invalid byte size {:?}", s(0).unwrap_or_default())),
        Func::Duration | Func::DurationSeconds => {
            super::pipeline::parse_duration_secs(s(0)?).map(Val::Float).ok_or_else(|| format!("invalid duration {:?}", s(0).unwrap_or_default()))
        }
        Func::UnixEpoch => text(want_time(&args[0])?.timestamp().to_string()),
        Func::UnixEpochMillis => text(want_time(&args[0])?.timestamp_millis().to_string()),
        Func::UnixEpochNanos => {
            let t = want_time(&args[0])?;
            text(t.timestamp_nanos_opt().map_or_else(|| "0".to_string(), |n| n.to_string()))
        }
        Func::UnixToTime => {
            let epoch = s(0)?;
            let bad = || format!("unable to parse time {epoch:?}");
            let n: i64 = epoch.parse().map_err(|_| bad())?;
            let nanos = match epoch.len() {
                5 => n.checked_mul(86_400_000_000_000),
                10 => n.checked_mul(1_000_000_000),
                13 => n.checked_mul(1_000_000),
                16 => n.checked_mul(1_000),
                19 => Some(n),
                _ => None,
            };
            Ok(Val::Time(Utc.timestamp_nanos(nanos.ok_or_else(bad)?)))
        }
        Func::AlignLeft | Func::AlignRight => {
            let (count, src) = (want_int(&args[0])?, s(1)?);
            if count > MAX_TEXT as i64 {
                return Err(format!("{}: width {count} is too large", f.name()));
            }
            let r = runes(src);
            if count < 0 || count as usize == r.len() {
                return text(src.to_string());
            }
            let count = count as usize;
            let left = matches!(f, Func::AlignLeft);
            text(match (count > r.len(), left) {
                (true, true) => format!("{src}{}", " ".repeat(count - r.len())),
                (true, false) => format!("{}{src}", " ".repeat(count - r.len())),
                (false, true) => r[..count].iter().collect(),
                (false, false) => r[r.len() - count..].iter().collect(),
            })
        }
        Func::B64Enc => text(base64::engine::general_purpose::STANDARD.encode(s(0)?)),
        Func::B64Dec => text(match base64::engine::general_purpose::STANDARD.decode(s(0)?) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // Sprig hands back the error text as the value.
            Err(e) => e.to_string(),
        }),
        Func::Title => {
            let mut out = String::new();
            let mut start = true;
            for c in s(0)?.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !(c.is_alphanumeric() || c == '_' || c == '\'');
            }
            text(out)
        }
        Func::Trunc => {
            let (n, r) = (want_int(&args[0])?, runes(s(1)?));
            let len = r.len() as i64;
            text(if n < 0 && len + n > 0 {
                r[(len + n) as usize..].iter().collect()
            } else if n >= 0 && len > n {
                r[..n as usize].iter().collect()
            } else {
                r.iter().collect()
            })
        }
        Func::Substr => {
            let (start, end, r) = (want_int(&args[0])?, want_int(&args[1])?, runes(s(2)?));
            let len = r.len() as i64;
            let (start, end) = (start.min(len), end.min(len));
            text(match (start < 0, end < 0) {
                (true, true) => String::new(),
                (true, false) => r[..end as usize].iter().collect(),
                (false, true) => r[start as usize..].iter().collect(),
                (false, false) if start > end => String::new(),
                (false, false) => r[start as usize..end as usize].iter().collect(),
            })
        }
        Func::Contains => Ok(Val::Bool(s(1)?.contains(s(0)?))),
        Func::HasPrefix => Ok(Val::Bool(s(1)?.starts_with(s(0)?))),
        Func::HasSuffix => Ok(Val::Bool(s(1)?.ends_with(s(0)?))),
        Func::Indent | Func::Nindent => {
            let pad = " ".repeat(want_int(&args[0])?.clamp(0, 1 << 10) as usize);
            let body = format!("{pad}{}", s(1)?.replace('\n', &format!("\n{pad}")));
            text(if matches!(f, Func::Nindent) { format!("\n{body}") } else { body })
        }
        Func::SprigReplace => text(s(2)?.replace(s(0)?, s(1)?)),
        Func::Repeat => {
            let (count, src) = (want_int(&args[0])?.max(0) as usize, s(1)?);
            if count.saturating_mul(src.len()) > MAX_TEXT {
                return Err(format!("repeat: the result would be longer than {MAX_TEXT} bytes"));
            }
            text(src.repeat(count))
        }
        Func::Int => Ok(Val::Int(loose_int(&args[0]))),
        Func::Float64 => Ok(Val::Float(loose_float(&args[0]))),
        Func::Add => Ok(Val::Int(args.iter().map(loose_int).fold(0i64, i64::wrapping_add))),
        Func::Mul => Ok(Val::Int(args.iter().map(loose_int).fold(1i64, i64::wrapping_mul))),
        Func::Sub => Ok(Val::Int(loose_int(&args[0]).wrapping_sub(loose_int(&args[1])))),
        Func::Div | Func::Mod => {
            let (a, b) = (loose_int(&args[0]), loose_int(&args[1]));
            if b == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Ok(Val::Int(if matches!(f, Func::Div) { a.wrapping_div(b) } else { a.wrapping_rem(b) }))
        }
        Func::Addf => Ok(Val::Float(args.iter().map(loose_float).sum())),
        Func::Mulf => Ok(Val::Float(args.iter().map(loose_float).product())),
        Func::Subf | Func::Divf => {
            let first = loose_float(&args[0]);
            Ok(Val::Float(args[1..].iter().map(loose_float).fold(first, |a, b| if matches!(f, Func::Subf) { a - b } else { a / b })))
        }
        Func::Max => Ok(Val::Int(args.iter().map(loose_int).max().expect("arity"))),
        Func::Min => Ok(Val::Int(args.iter().map(loose_int).min().expect("arity"))),
        Func::Maxf => Ok(Val::Float(args.iter().map(loose_float).fold(f64::NEG_INFINITY, f64::max))),
        Func::Minf => Ok(Val::Float(args.iter().map(loose_float).fold(f64::INFINITY, f64::min))),
        Func::Ceil => Ok(Val::Float(loose_float(&args[0]).ceil())),
        Func::Floor => Ok(Val::Float(loose_float(&args[0]).floor())),
        Func::Round => {
            // round(value, places[, threshold]): Sprig rounds up from `threshold` (default .5).
            let (v, places) = (loose_float(&args[0]), loose_int(&args[1]).clamp(-18, 18) as i32);
            let threshold = args.get(2).map_or(0.5, loose_float);
            let scale = 10f64.powi(places);
            let scaled = (v * scale).abs();
            let whole = scaled.trunc();
            let rounded = if scaled - whole >= threshold { whole + 1.0 } else { whole };
            Ok(Val::Float((rounded / scale).copysign(v)))
        }
        Func::Date => {
            let layout = s(0)?;
            // Sprig formats a time, or Unix seconds; anything else is formatted as now.
            let t = match &args[1] {
                Val::Time(t) => *t,
                Val::Int(secs) => Utc.timestamp_opt(*secs, 0).single().unwrap_or_default(),
                _ => Utc::now(),
            };
            text(format_go_layout(&t, layout))
        }
        Func::ToDate | Func::ToDateInZone => {
            let (layout, value) = match f {
                Func::ToDate => (s(0)?, s(1)?),
                _ => (s(0)?, s(2)?),
            };
            // Loki's toDateInZone: a zone Go does not know is UTC.
            let zone = match f {
                Func::ToDate => None,
                _ => Some(s(1)?.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC)),
            };
            // Like Go, a value that does not parse gives the zero time.
            let zero = NaiveDateTime::default().and_utc().with_year(1).unwrap_or_default();
            Ok(Val::Time(parse_go_layout_in(value, layout, zone).unwrap_or(zero)))
        }
        // Sprig's fromJson: what does not parse is nil.
        Func::FromJson => Ok(serde_json::from_str(s(0)?).map_or(Val::Nil, from_json)),
        Func::Default => Ok(match args.get(1) {
            Some(given) if truthy(given, scope) => given.clone(),
            _ => args[0].clone(),
        }),
        Func::Regex(kind, compiled) => {
            let pattern = s(0)?;
            let fresh;
            let re = match compiled {
                Some(re) => re,
                None => {
                    fresh = Regex::new(pattern).map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))?;
                    &fresh
                }
            };
            let src = s(1)?;
            match kind {
                RegexFn::Count => Ok(Val::Int(re.find_iter(src).count() as i64)),
                RegexFn::Replace => text(re.replace_all(src, s(2)?).into_owned()),
                RegexFn::ReplaceLiteral => text(re.replace_all(src, regex::NoExpand(s(2)?)).into_owned()),
            }
        }
    }
}

/// `s` without the prefix (or suffix) `affix`, when it has it.
fn strip(s: &str, affix: &str, prefix: bool) -> String {
    let stripped = if prefix { s.strip_prefix(affix) } else { s.strip_suffix(affix) };
    stripped.unwrap_or(s).to_string()
}

/// Go's `eq`/`lt` rules: numbers with numbers of the same kind, strings with strings.
fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y).ok_or_else(|| "NaN in comparison".to_string()),
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) => Ok(x.cmp(y)),
        _ => Err(format!("incompatible types for comparison: {} and {}", type_name(a), type_name(b))),
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                let Some(hex) = hex else {
                    return Err(format!("invalid URL escape {:?}", s.get(i..(i + 3).min(s.len())).unwrap_or("%")));
                };
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------------------
// fmt

/// Go's formatting of a float with verb `e`, `f` or `g` and an optional precision (`%v` is
/// `g` with the shortest digits).
pub(crate) fn go_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let exp_form = |s: String| -> String {
        // Rust writes 1.5e6 / 1.5e-7; Go writes 1.5e+06 / 1.5e-07.
        let (mantissa, exp) = s.split_once('e').expect("exponent form");
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    };
    match verb {
        'f' => format!("{:.*}", prec.unwrap_or(6), f),
        'e' => exp_form(format!("{:.*e}", prec.unwrap_or(6), f)),
        _ => {
            // %g: the shortest digits (or `prec` significant ones), in %e form when the
            // exponent is < -4 or >= the precision (6 for the shortest).
            let sci = match prec {
                None => format!("{f:e}"),
                Some(p) => format!("{:.*e}", p.max(1) - 1, f),
            };
            let (mantissa, exp) = sci.split_once('e').expect("exponent form");
            let exp: i32 = exp.parse().expect("exponent");
            let digits = mantissa.trim_start_matches('-').replace('.', "");
            let digits = match prec {
                Some(_) => digits.trim_end_matches('0').to_string(),
                None => digits,
            };
            let digits = if digits.is_empty() { "0".to_string() } else { digits };
            let eprec = match prec {
                None => 6,
                Some(p) => p.max(1) as i32,
            };
            if exp < -4 || exp >= eprec {
                let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.clone() };
                exp_form(format!("{}{m}e{exp}", if f < 0.0 { "-" } else { "" }))
            } else {
                let decimals = (digits.len() as i32 - 1 - exp).max(0) as usize;
                format!("{:.*}", decimals, f)
            }
        }
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %e %g %x %X %o %b %t %c %%`
/// with the flags `- + 0 space`, a width and a precision.
fn go_sprintf(format: &str, args: &[Val], scope: &Scope) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let read_num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize).min(MAX_TEXT));
                chars.next();
            }
            n
        };
        let width = read_num(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(read_num(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let bad = || format!("%!{verb}({}={})", type_name(arg), to_text(arg, scope));
        let signed = |s: String, negative: bool| -> (String, String) {
            let sign = if negative { "-" } else if plus { "+" } else if space { " " } else { "" };
            (sign.to_string(), s)
        };
        let (sign, body, numeric) = match (verb, arg) {
            ('v', Val::Float(f)) | ('g' | 'e' | 'f' | 'F' | 'G' | 'E', Val::Float(f)) => {
                let v = match verb {
                    'v' => 'g',
                    'F' => 'f',
                    other => other.to_ascii_lowercase(),
                };
                let s = go_float(f.abs(), v, prec);
                let s = if verb.is_ascii_uppercase() { s.to_uppercase() } else { s };
                let (sign, s) = signed(s, f.is_sign_negative() && !f.is_nan());
                (sign, s, f.is_finite())
            }
            ('v' | 'd', Val::Int(i)) => {
                let (sign, s) = signed(i.unsigned_abs().to_string(), *i < 0);
                (sign, s, true)
            }
            ('x' | 'X' | 'o' | 'b' | 'c', Val::Int(i)) => {
                let u = i.unsigned_abs();
                let s = match verb {
                    'x' => format!("{u:x}"),
                    'X' => format!("{u:X}"),
                    'o' => format!("{u:o}"),
                    'b' => format!("{u:b}"),
                    _ => char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
                };
                if verb == 'c' { (String::new(), s, false) } else {
                    let (sign, s) = signed(s, *i < 0);
                    (sign, s, true)
                }
            }
            ('v' | 's', Val::Str(s)) => {
                let s = match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                (String::new(), s, false)
            }
            ('q', Val::Str(s)) => (String::new(), go_quote(s), false),
            ('x' | 'X', Val::Str(s)) => {
                let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                (String::new(), if verb == 'X' { hex.to_uppercase() } else { hex }, false)
            }
            ('v' | 't', Val::Bool(b)) => (String::new(), b.to_string(), false),
            ('v' | 's', Val::Time(_) | Val::Labels) | ('v', Val::Map(_) | Val::List(_)) => (String::new(), to_text(arg, scope), false),
            ('v', Val::Nil) => (String::new(), "<nil>".to_string(), false),
            (_, Val::Nil) => (String::new(), format!("%!{verb}(<nil>)"), false),
            _ => (String::new(), bad(), false),
        };
        let len = sign.chars().count() + body.chars().count();
        let pad = width.unwrap_or(0).saturating_sub(len);
        if minus {
            let _ = write!(out, "{sign}{body}{}", " ".repeat(pad));
        } else if zero && numeric {
            let _ = write!(out, "{sign}{}{body}", "0".repeat(pad));
        } else {
            let _ = write!(out, "{}{sign}{body}", " ".repeat(pad));
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..].iter().map(|a| format!("{}={}", type_name(a), to_text(a, scope))).collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Go time layouts

/// One element of a Go layout (`2006-01-02T15:04:05.000Z07:00`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum LayoutPart<'a> {
    Literal(&'a str),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    YearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm(bool),
    ZoneName,
    /// `Z07:00` and friends: `Z` for UTC, else the offset with or without a colon.
    Offset { z: bool, colon: bool, minutes: bool },
    /// `.000` (fixed digits) or `.999` (trailing zeros dropped), with `.` or `,`.
    Fraction { sep: char, digits: usize, trim: bool },
}

fn layout_parts(layout: &str) -> Vec<LayoutPart<'_>> {
    use LayoutPart::*;
    const TOKENS: &[(&str, LayoutPart<'static>)] = &[
        ("January", LongMonth),
        ("Jan", Month),
        ("Monday", LongWeekDay),
        ("Mon", WeekDay),
        ("MST", ZoneName),
        ("2006", LongYear),
        ("002", YearDay),
        ("01", ZeroMonth),
        ("02", ZeroDay),
        ("03", ZeroHour12),
        ("04", ZeroMinute),
        ("05", ZeroSecond),
        ("06", Year),
        ("15", Hour),
        ("1", NumMonth),
        ("_2", UnderDay),
        ("2", Day),
        ("3", Hour12),
        ("4", Minute),
        ("5", Second),
        ("PM", Pm(true)),
        ("pm", Pm(false)),
        ("Z07:00", Offset { z: true, colon: true, minutes: true }),
        ("Z0700", Offset { z: true, colon: false, minutes: true }),
        ("Z07", Offset { z: true, colon: false, minutes: false }),
        ("-07:00", Offset { z: false, colon: true, minutes: true }),
        ("-0700", Offset { z: false, colon: false, minutes: true }),
        ("-07", Offset { z: false, colon: false, minutes: false }),
    ];
    let mut parts = Vec::new();
    let bytes = layout.as_bytes();
    let mut literal_start = 0;
    let mut i = 0;
    'scan: while i < layout.len() {
        if !layout.is_char_boundary(i) {
            i += 1;
            continue;
        }
        if matches!(bytes[i], b'.' | b',') && matches!(bytes.get(i + 1), Some(b'0' | b'9')) {
            let digit = bytes[i + 1];
            let mut j = i + 1;
            while bytes.get(j) == Some(&digit) {
                j += 1;
            }
            if !bytes.get(j).is_some_and(u8::is_ascii_digit) {
                parts.push(Literal(&layout[literal_start..i]));
                parts.push(Fraction { sep: bytes[i] as char, digits: j - i - 1, trim: digit == b'9' });
                i = j;
                literal_start = i;
                continue;
            }
        }
        for (token, part) in TOKENS {
            if layout[i..].starts_with(token) {
                parts.push(Literal(&layout[literal_start..i]));
                parts.push(*part);
                i += token.len();
                literal_start = i;
                continue 'scan;
            }
        }
        i += 1;
    }
    parts.push(Literal(&layout[literal_start..]));
    parts.retain(|p| *p != Literal(""));
    parts
}

/// Formats `t` (UTC) with a Go layout, as `time.Time.Format` does.
fn format_go_layout(t: &DateTime<Utc>, layout: &str) -> String {
    use LayoutPart::*;
    let mut out = String::new();
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    for part in layout_parts(layout) {
        let _ = match part {
            Literal(s) => write!(out, "{s}"),
            LongMonth => write!(out, "{}", t.format("%B")),
            Month => write!(out, "{}", t.format("%b")),
            NumMonth => write!(out, "{}", t.month()),
            ZeroMonth => write!(out, "{:02}", t.month()),
            LongWeekDay => write!(out, "{}", t.format("%A")),
            WeekDay => write!(out, "{}", t.format("%a")),
            Day => write!(out, "{}", t.day()),
            UnderDay => write!(out, "{:>2}", t.day()),
            ZeroDay => write!(out, "{:02}", t.day()),
            YearDay => write!(out, "{:03}", t.ordinal()),
            Hour => write!(out, "{:02}", t.hour()),
            Hour12 => write!(out, "{hour12}"),
            ZeroHour12 => write!(out, "{hour12:02}"),
            Minute => write!(out, "{}", t.minute()),
            ZeroMinute => write!(out, "{:02}", t.minute()),
            Second => write!(out, "{}", t.second()),
            ZeroSecond => write!(out, "{:02}", t.second()),
            LongYear => write!(out, "{:04}", t.year()),
            Year => write!(out, "{:02}", t.year().rem_euclid(100)),
            Pm(upper) => write!(out, "{}", match (t.hour() >= 12, upper) {
                (true, true) => "PM",
                (false, true) => "AM",
                (true, false) => "pm",
                (false, false) => "am",
            }),
            ZoneName => write!(out, "UTC"),
            Offset { z: true, .. } => write!(out, "Z"),
            Offset { colon: true, .. } => write!(out, "+00:00"),
            Offset { minutes: true, .. } => write!(out, "+0000"),
            Offset { .. } => write!(out, "+00"),
            Fraction { sep, digits, trim } => {
                let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                let mut frac = nanos[..digits.min(9)].to_string();
                frac.extend(std::iter::repeat_n('0', digits.saturating_sub(9)));
                if trim {
                    let kept = frac.trim_end_matches('0');
                    if kept.is_empty() { Ok(()) } else { write!(out, "{sep}{kept}") }
                } else {
                    write!(out, "{sep}{frac}")
                }
            }
        };
    }
    out
}

/// Parses `value` with a Go layout: with the offset the layout has (`-07:00`, `Z07:00`), else
/// as local time of `zone` (Go's `time.ParseInLocation`; in a zone's repeated hour the earlier
/// instant), else in UTC. A zone name in the layout must be `UTC`.
fn parse_go_layout_in(value: &str, layout: &str, zone: Option<chrono_tz::Tz>) -> Option<DateTime<Utc>> {
    use LayoutPart::*;
    let mut fmt = String::new();
    let mut has_zone = false;
    for part in layout_parts(layout) {
        match part {
            Literal(s) => fmt.push_str(&s.replace('%', "%%")),
            LongMonth => fmt.push_str("%B"),
            Month => fmt.push_str("%b"),
            NumMonth | ZeroMonth => fmt.push_str("%m"),
            LongWeekDay => fmt.push_str("%A"),
            WeekDay => fmt.push_str("%a"),
            Day | ZeroDay => fmt.push_str("%d"),
            UnderDay => fmt.push_str("%e"),
            YearDay => fmt.push_str("%j"),
            Hour => fmt.push_str("%H"),
            Hour12 | ZeroHour12 => fmt.push_str("%I"),
            Minute | ZeroMinute => fmt.push_str("%M"),
            Second | ZeroSecond => fmt.push_str("%S"),
            LongYear => fmt.push_str("%Y"),
            Year => fmt.push_str("%y"),
            Pm(_) => fmt.push_str("%p"),
            ZoneName => fmt.push_str("UTC"),
            Offset { colon: true, .. } => {
                has_zone = true;
                fmt.push_str("%:z");
            }
            Offset { .. } => {
                has_zone = true;
                fmt.push_str("%z");
            }
            Fraction { .. } => fmt.push_str("%.f"),
        }
    }
    if has_zone {
        // `Z` stands for UTC where the layout has an offset.
        let value = value.replace('Z', "+00:00");
        DateTime::parse_from_str(&value, &fmt).ok().map(|t| t.with_timezone(&Utc))
    } else {
        NaiveDateTime::parse_from_str(value, &fmt)
            .or_else(|_| chrono::NaiveDate::parse_from_str(value, &fmt).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
            .ok()
            .and_then(|t| match zone {
                Some(tz) => tz.from_local_datetime(&t).earliest().map(|t| t.with_timezone(&Utc)),
                None => Some(t.and_utc()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn render(src: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
        // 2024-03-05T07:08:09.120Z
        Template::parse(src)?.render(&labels(pairs), "the line", 1_709_622_489_120_000_000)
    }

    #[test]
    fn values_pipes_and_blocks() {
        let l = [("level", "warn"), ("status", "503"), ("msg", "  Disk full  ")];
        let cases = [
            ("{{.level}}: {{ .msg }}{{.none}}!", "warn:   Disk full  !"),
            ("{{ .level | ToUpper }} {{ToLower .level}} [{{ __line__ | trunc 4 }}]", "WARN warn [the ]"),
            (r#"{{ if eq .status "500" "503" }}down{{ else if eq .level "warn" }}warn{{ else }}ok{{ end }}"#, "down"),
            (r#"{{ if ne .status "503" }}x{{ else if .level }}lvl{{ end }}"#, "lvl"),
            ("{{ if .none }}x{{ else }}empty{{ end }}", "empty"),
            ("{{ with .level }}<{{ . }}>{{ end }}{{ with .none }}x{{ else }}-{{ end }}", "<warn>-"),
            ("{{- .level -}}  ,  {{- .status }} {{/* a comment */}}", "warn,503 "),
            (r#"{{ .msg | TrimSpace | trunc 4 | printf "%q" }}"#, r#""Disk""#),
            (r#"{{ and .level .none }}|{{ or .none .status }}|{{ not .none }}|{{ len .level }}"#, "|503|true|4"),
            (r#"{{ index . "level" }} {{ (len .msg) }} {{ lt .level "x" }} {{ ge (len .level) 4 }}"#, "warn 13 true true"),
            (r#"{{ print .level 1 2 "z" }} {{ 1.5 }} {{ 1e6 }} {{ 0x1F }} {{ true }}"#, "warn1 2z 1.5 1e+06 31 true"),
            (r#"{{ urlquery 1 2 "a&b" }} {{ .msg | urlquery }}"#, "1+2a%26b ++Disk+full++"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn string_functions_take_arguments_as_loki_registers_them() {
        let l = [("path", "/api/v1/query"), ("q", "a b&c=d"), ("name", "hello world")];
        let cases = [
            // strings.* (value first) against Sprig (value last).
            (r#"{{ TrimPrefix .path "/api" }}|{{ .path | trimPrefix "/api" }}"#, "/v1/query|/v1/query"),
            (r#"{{ TrimSuffix .path "query" }}|{{ .path | trimSuffix "query" }}"#, "/api/v1/|/api/v1/"),
            (r#"{{ Replace .path "/" "_" 2 }}|{{ .path | replace "/" "_" }}"#, "_api_v1/query|_api_v1_query"),
            (r#"{{ Trim "xxhixx" "x" }} {{ TrimLeft "xxhi" "x" }} {{ TrimRight "hixx" "x" }} {{ trimAll "x" "xhix" }} {{ trim " y " }}"#, "hi hi hi hi y"),
            (r#"{{ regexReplaceAll "v(\\d)" .path "V${1}x" }} {{ regexReplaceAllLiteral "v\\d" .path "$1" }} {{ count "/" .path }}"#, "/api/V1x/query /api/$1/query 3"),
            (r#"{{ .q | urlencode }} {{ "a%20b+c" | urldecode }} {{ .name | b64enc }} {{ "aGk=" | b64dec }}"#, "a+b%26c%3Dd a b c aGVsbG8gd29ybGQ= hi"),
            (r#"[{{ alignLeft 7 "abc" }}][{{ alignRight 7 "abc" }}][{{ alignLeft 2 "abc" }}][{{ alignRight 2 "abc" }}]"#, "[abc    ][    abc][ab][bc]"),
            (r#"{{ title .name }} {{ substr 1 4 .name }} {{ repeat 3 "ab" }} {{ trunc -3 .name }} {{ contains "lo w" .name }} {{ hasPrefix "he" .name }} {{ hasSuffix "x" .name }}"#, "Hello World ell ababab rld true true false"),
            ("{{ indent 2 \"a\\nb\" }}|{{ nindent 1 \"c\" }}", "  a\n  b|\n c"),
            (r#"{{ .none | default "-" }} {{ default "-" .path }} {{ .path | ToUpper | lower }}"#, "- /api/v1/query /api/v1/query"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn numbers_follow_sprig() {
        let l = [("n", "7"), ("x", "2.5"), ("bad", "abc"), ("d", "1m30s"), ("b", "2KB")];
        let cases = [
            ("{{ add .n 1 2 }} {{ sub .n 10 }} {{ mul .n 2 }} {{ div .n 2 }} {{ mod .n 4 }} {{ add .bad 1 }}", "10 -3 14 3 3 1"),
            ("{{ addf .x 1 }} {{ subf .x 0.5 }} {{ mulf .x 2 }} {{ divf 1 .x }} {{ maxf .x 3 }} {{ minf .x 3 }}", "3.5 2 5 0.4 3 2.5"),
            ("{{ max 1 .n 3 }} {{ min 4 .n }} {{ int .x }}{{ int \"3.0\" }} {{ float64 .n }} {{ ceil .x }} {{ floor .x }} {{ round 3.14159 2 }} {{ round 2.5 0 }}", "7 4 03 7 3 2 3.14 3"),
            ("{{ duration .d }} {{ bytes .b }} {{ printf \"%.1f\" (duration_seconds .d) }}", "90 2000 90.0"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn printf_follows_go_fmt() {
        let l = [("s", "abc"), ("n", "5")];
        let cases = [
            (r#"{{ printf "%s|%5s|%-5s|%.2s|%q|%x" .s .s .s .s .s .s }}"#, r#"abc|  abc|abc  |ab|"abc"|616263"#),
            (r#"{{ printf "%d|%5d|%-5d|%05d|%+d|%x|%X|%o|%b|%c" 42 42 42 -42 42 255 255 8 5 65 }}"#, "42|   42|42   |-0042|+42|ff|FF|10|101|A"),
            (r#"{{ printf "%f|%.2f|%8.3f|%e|%g|%g|%v|%G" 3.14159 3.14159 3.14159 1234.5678 0.00001234 100000.0 2.5 1e21 }}"#, "3.141590|3.14|   3.142|1.234568e+03|1.234e-05|100000|2.5|1E+21"),
            (r#"{{ printf "%d %s %t %v%%" .n 3 true .s }}"#, "%!d(string=5) %!s(int=3) true abc%"),
            (r#"{{ printf "%s %s" "a" }} {{ printf "%s" "a" "b" }}"#, "a %!s(MISSING) a%!(EXTRA string=b)"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn times_format_with_go_layouts() {
        let cases = [
            ("{{ __timestamp__ }}", "2024-03-05 07:08:09.12 +0000 UTC"),
            (r#"{{ __timestamp__ | date "2006-01-02T15:04:05.000Z07:00" }}"#, "2024-03-05T07:08:09.120Z"),
            (r#"{{ date "Mon Jan _2 3:4:5 PM 06 002 .999 -07:00" __timestamp__ }}"#, "Tue Mar  5 7:8:9 AM 24 065 .12 +00:00"),
            (r#"{{ date "January 02, 2006 15h" (unixToTime "1700000000") }}"#, "November 14, 2023 22h"),
            (r#"{{ unixEpoch __timestamp__ }} {{ unixEpochMillis __timestamp__ }} {{ unixEpochNanos (unixToTime "1709622489120") }}"#, "1709622489 1709622489120 1709622489120000000"),
            (r#"{{ (toDate "2006-01-02 15:04" "2024-01-31 10:20") | unixEpoch }} {{ toDate "2006-01-02" "2024-01-31" | date "Jan 2" }} {{ toDate "2006" "x" | unixEpoch }}"#, "1706696400 Jan 31 -62135596800"),
            // Local times of a zone: Berlin is UTC+1 in January, New York UTC-4 in July; an
            // unknown zone is UTC, an offset in the value wins over the zone.
            (r#"{{ toDateInZone "2006-01-02 15:04" "Europe/Berlin" "2024-01-31 10:20" | unixEpoch }} {{ toDateInZone "2006-01-02 15:04" "America/New_York" "2024-07-01 12:00" | unixEpoch }}"#, "1706692800 1719849600"),
            (r#"{{ toDateInZone "2006-01-02 15:04" "Mars/Base" "2024-01-31 10:20" | unixEpoch }} {{ toDateInZone "2006-01-02 15:04 -07:00" "Europe/Berlin" "2024-01-31 10:20 +00:00" | unixEpoch }} {{ toDateInZone "2006" "UTC" "x" | unixEpoch }}"#, "1706696400 1706696400 -62135596800"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &[]).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn variables_range_and_json_follow_go() {
        let body = r#"{"user":{"name":"ann","id":7},"tags":["a","b"],"n":null,"big":1e21,"ratio":0.25}"#;
        let l = [("level", "warn"), ("status", "503"), ("body", body)];
        let cases = [
            // A declaration prints nothing; `$` is the labels wherever the dot is.
            ("{{ $l := .level }}{{ $l }}-{{ $.status }}{{ with .status }}/{{ $.level }}{{ end }}", "warn-503/warn"),
            // `=` sets the variable around the block; `:=` in the block shadows it until `end`.
            ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
            ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
            ("{{ if $x := .level }}{{ $x }}{{ else }}{{ $x }}!{{ end }}", "warn"),
            // Objects from JSON: members by field, index and chain; numbers are float64.
            (
                "{{ with fromJson .body }}{{ .user.name }} {{ .user.id }} {{ len .tags }} {{ index .tags 1 }} {{ .n }} {{ .missing }} {{ .big }} {{ .ratio }}{{ end }}",
                "ann 7 2 b <no value> <no value> 1e+21 0.25",
            ),
            ("{{ (fromJson .body).user.name }} {{ $j := fromJson .body }}{{ $j.tags }} {{ index $j \"ratio\" | mulf 4 }}", "ann [a b] 1"),
            ("{{ fromJson .body }}", "map[big:1e+21 n:<nil> ratio:0.25 tags:[a b] user:map[id:7 name:ann]]"),
            // `range` over arrays, objects (key order), the labels and a count.
            ("{{ range $i, $t := (fromJson .body).tags }}{{ $i }}:{{ $t }} {{ end }}", "0:a 1:b "),
            ("{{ range $k, $v := (fromJson .body).user }}{{ $k }}={{ $v }};{{ end }}", "id=7;name=ann;"),
            ("{{ range $k, $v := . }}{{ if ne $k \"body\" }}{{ $k }}={{ $v }};{{ end }}{{ end }}", "level=warn;status=503;"),
            ("{{ range $v := . }}{{ if ne $v $.body }}[{{ . }}]{{ end }}{{ end }}", "[warn][503]"),
            ("{{ range 3 }}{{ . }}{{ end }}", "012"),
            ("{{ range $i := 5 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ $i }}{{ end }}", "02"),
            // An empty range, and nil (bad JSON), run the `else` body.
            ("{{ range fromJson \"[]\" }}x{{ else }}none{{ end }} {{ range fromJson \"{bad\" }}x{{ else }}nil{{ end }}", "none nil"),
            // Variables declared in a range body are gone at the next element.
            ("{{ range 2 }}{{ $n := . }}{{ $n }}{{ end }}", "01"),
            // nil given to fmt is `<nil>`; printf's verbs on objects and nil.
            ("{{ $j := fromJson .body }}{{ print $j.n }} {{ printf \"%v|%s|%v|%d\" $j.tags $j.n $j.n $j.user.id }}", "<nil> [a b]|%!s(<nil>)|<nil>|%!d(float64=7)"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
    }

    /// `{{ else with }}` (Go 1.23): tried when the `with` value is empty, with its own value as
    /// the dot; only after a `with`.
    #[test]
    fn else_with_chains() {
        let l = [("level", "warn")];
        assert_eq!(render("{{ with .none }}a{{ else with .level }}b={{ . }}{{ else }}c{{ end }}", &l).as_deref(), Ok("b=warn"));
        assert_eq!(render("{{ with .none }}a{{ else with .none2 }}b{{ else }}c{{ end }}!", &l).as_deref(), Ok("c!"));
        assert_eq!(render("{{ with .level }}{{ . }}{{ else with .none }}b{{ end }}", &l).as_deref(), Ok("warn"));
        assert!(Template::parse("{{ if .x }}a{{ else with .y }}b{{ end }}").is_err());
    }

    /// Named templates as in Go: `define` prints nothing where it stands, `template` runs one
    /// with the value as its dot (nil without one) and `$` set to that value, outer variables
    /// invisible; `block` defines and runs at once; a template may call itself.
    #[test]
    fn define_template_and_block() {
        let l = [("level", "warn"), ("status", "503")];
        let cases = [
            (r#"{{ define "lvl" }}[{{ . | upper }}]{{ end }}a{{ template "lvl" .level }}b"#, "a[WARN]b"),
            // The labels as the dot, and `$` inside is the dot passed.
            (r#"{{ define "both" }}{{ .level }}/{{ $.status }}{{ end }}{{ template "both" . }}"#, "warn/503"),
            // No pipeline: the dot is nil.
            (r#"{{ define "nil" }}<{{ . }}>{{ end }}{{ template "nil" }}"#, "<<no value>>"),
            // `block`: defined and run in place; a later `template` runs it again.
            (r#"{{ block "s" .status }}({{ . }}){{ end }}-{{ template "s" "x" }}"#, "(503)-(x)"),
            // A template calling itself, counting down.
            (r#"{{ define "down" }}{{ . }}{{ if gt . 0 }}{{ template "down" (sub . 1) }}{{ end }}{{ end }}{{ template "down" 3 }}"#, "3210"),
            // Defined after its use, and inside an `if` body (as `block` may be).
            (r#"{{ if true }}{{ template "late" }}{{ end }}{{ define "late" }}ok{{ end }}"#, "ok"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, &l).as_deref(), Ok(want), "{src}");
        }
        for (src, want) in [
            (r#"{{ template "none" }}"#, "no template \"none\" is defined"),
            (r#"{{ define "a" }}1{{ end }}{{ define "a" }}2{{ end }}"#, "multiple definition of template \"a\""),
            (r#"{{ define "a" }}x"#, "unterminated {{define}}"),
            (r#"{{ block "b" }}x{{ end }}"#, "{{block}} needs a pipeline"),
            (r#"{{ define a }}x{{ end }}"#, "needs a quoted template name"),
            (r#"{{ $v := 1 }}{{ define "t" }}{{ $v }}{{ end }}"#, "undefined variable \"$v\""),
        ] {
            let err = Template::parse(src).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
        // Endless recursion ends in an error, not a stack overflow.
        let err = render(r#"{{ define "loop" }}{{ template "loop" . }}{{ end }}{{ template "loop" . }}"#, &l).unwrap_err();
        assert!(err.contains("nested deeper than 64"), "{err}");
    }

    #[test]
    fn errors_at_parse_and_at_run_time() {
        for (src, want) in [
            ("{{ .x", "unclosed action"),
            ("{{ if .x }}a", "unterminated {{if}}"),
            ("{{ end }}", "unexpected {{end}}"),
            ("{{ sha256 .x }}", "function \"sha256\" not defined"),
            ("{{ html .x }}", "not supported yet"),
            ("{{ $x }}", "undefined variable \"$x\""),
            ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \"$y\""),
            ("{{ range . }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \"$y\""),
            ("{{ $z = 1 }}", "undefined variable \"$z\""),
            ("{{ break }}", "{{break}} outside {{range}}"),
            ("{{ range . }}{{ end }}{{ if true }}{{ continue }}{{ end }}", "{{continue}} outside {{range}}"),
            ("{{ $a, $b := . }}", "too many declarations"),
            ("{{ range . }}x", "unterminated {{range}}"),
            ("{{ .x | .y }}", "non executable command"),
            ("{{ .x 3 }}", "can't give argument to non-function"),
            ("{{ ToUpper }}", "wrong number of args for ToUpper: want 1, got 0"),
            (r#"{{ regexReplaceAll "(" .x "" }}"#, "invalid regular expression"),
            (r#"{{ printf "%s" ( .x }}"#, "unclosed left paren"),
            ("{{ printf \"%s\" upper }}", "wrong number of args for upper: want 1, got 0"),
        ] {
            let err = Template::parse(src).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
        // Deep nesting is refused before anything recurses on it.
        let deep = format!("{{{{ {}.x{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(Template::parse(&deep).unwrap_err().contains("nested deeper than 64"));
        let deep = format!("{}x{}", "{{ if .x }}".repeat(100_000), "{{ end }}".repeat(100_000));
        assert!(Template::parse(&deep).unwrap_err().contains("nested deeper than 64"));
        let ok = format!("{{{{ {}.x{} }}}}", "(".repeat(64), ")".repeat(64));
        assert_eq!(Template::parse(&ok).unwrap().render(&labels(&[("x", "y")]), "", 0).as_deref(), Ok("y"));
        let l = [("s", "abc")];
        for (src, want) in [
            ("{{ div 1 0 }}", "error calling div: runtime error: integer divide by zero"),
            ("{{ lt .s 3 }}", "incompatible types for comparison: string and int"),
            ("{{ ToUpper 3 }}", "expected string; got int"),
            ("{{ .s.x }}", "can't evaluate field x in type string"),
            ("{{ unixToTime .s }}", "unable to parse time"),
            ("{{ repeat 100000 (repeat 100000 .s) }}", "repeat: the result would be longer than"),
            ("{{ alignLeft 9999999999 .s }}", "alignLeft: width 9999999999 is too large"),
            ("{{ range 1000000 }}{{ end }}", "the template ran more than 100000 actions"),
            ("{{ range 50000 }}{{ repeat 100 \"x\" }}{{ end }}", "the template's output is longer than"),
            ("{{ range .s }}{{ end }}", "range can't iterate over abc"),
            ("{{ range $k, $v := 3 }}{{ end }}", "more than one variable"),
            ("{{ (fromJson \"null\").a }}", "nil pointer evaluating interface {}.a"),
            ("{{ index (fromJson \"[1]\") 1 }}", "index out of range: 1"),
        ] {
            let err = render(src, &l).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
    }
}
