//! A small, bounded element tree read from XML bytes with quick-xml's namespace-aware
//! reader: local names, resolved namespaces and text, nothing else.
//!
//! Every dimension is checked while reading, before the tree grows: input length, depth,
//! element count, children per element and attachment elements. DTDs are refused (so no
//! entity expansion), and only the predefined entities and character references are
//! resolved. Prefixes are free: an element is identified by its namespace URI and local
//! name, whatever prefix (or default namespace) the sender used.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::{EDXML_NAMESPACE, EdxmlError, MAX_EDXML_LEN};
use crate::document::MAX_ATTACHMENTS;

/// Deepest element nesting accepted (edXML needs about eight levels).
pub(crate) const MAX_DEPTH: usize = 32;
/// Most elements in one input (a header with 1,024 recipients needs about 12,000).
pub(crate) const MAX_ELEMENTS: usize = 100_000;
/// Most child elements of one element.
pub(crate) const MAX_CHILDREN: usize = 4_096;

/// Which namespace an element is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ns {
    /// `http://www.mic.gov.vn/TBT/QCVN_102_2016`.
    Edxml,
    /// No namespace at all.
    Unbound,
    /// Some other namespace (e.g. XML-DSig inside edXMLHeader/Signature).
    Other(String),
}

/// One element: its local name, namespace, text content and child elements.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub name: String,
    pub ns: Ns,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Whether this element is an edXML element (or an unqualified one, which some
    /// senders use for `AttachmentEncoded` and its children).
    pub fn is_edxml_or_unbound(&self) -> bool {
        matches!(self.ns, Ns::Edxml | Ns::Unbound)
    }

    /// Child elements named `name` in the edXML namespace or in none.
    pub fn children_named<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a Element> + 'n
    where
        'a: 'n,
    {
        self.children
            .iter()
            .filter(move |c| c.name == name && c.is_edxml_or_unbound())
    }

    /// The first child element named `name` in the edXML namespace or in none.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && c.is_edxml_or_unbound())
    }

    /// A child named `name` in a foreign namespace, used to say "wrong namespace" rather
    /// than "missing" when that is what happened.
    pub fn foreign_child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && matches!(c.ns, Ns::Other(_)))
    }

    /// The text, trimmed of surrounding whitespace.
    pub fn trimmed_text(&self) -> &str {
        self.text.trim()
    }
}

fn malformed(position: u64, reason: impl Into<String>) -> EdxmlError {
    EdxmlError::Malformed {
        position,
        reason: reason.into(),
    }
}

fn path_of(stack: &[Element], name: &str) -> String {
    let mut path = String::new();
    // Paths start below the envelope, as the extraction's do (`MessageHeader/To`).
    let skipped = stack
        .iter()
        .take_while(|el| matches!(el.name.as_str(), "edXML" | "edXMLEnvelope" | "edXMLHeader"))
        .count();
    for el in stack.iter().skip(skipped) {
        path.push_str(&el.name);
        path.push('/');
    }
    path.push_str(name);
    path
}

fn new_element(
    start: &BytesStart<'_>,
    resolved: &ResolveResult<'_>,
    position: u64,
) -> Result<Element, EdxmlError> {
    let name = start.local_name().into_inner().to_owned();
    let ns = match resolved {
        ResolveResult::Bound(ns) if ns.0 == EDXML_NAMESPACE => Ns::Edxml,
        ResolveResult::Bound(ns) => Ns::Other(ns.0.chars().take(256).collect()),
        ResolveResult::Unbound => Ns::Unbound,
        ResolveResult::Unknown(prefix) => {
            return Err(malformed(
                position,
                format!(
                    "element <{}> uses the undeclared namespace prefix {:?}",
                    start.name().into_inner(),
                    prefix.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    Ok(Element {
        name,
        ns,
        text: String::new(),
        children: Vec::new(),
    })
}

/// Reads `input` into a tree, checking the limits as it goes.
pub(crate) fn parse(input: &[u8]) -> Result<Element, EdxmlError> {
    if input.len() > MAX_EDXML_LEN {
        return Err(EdxmlError::TooLarge {
            path: "(input)".into(),
            what: "input length in bytes",
            actual: input.len(),
            limit: MAX_EDXML_LEN,
        });
    }
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|e| {
        malformed(
            u64::try_from(e.valid_up_to()).unwrap_or(u64::MAX),
            "input is not UTF-8 (edXML is UTF-8)",
        )
    })?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut attachments = 0usize;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(e) => {
                let reason = e.to_string();
                return Err(malformed(reader.error_position(), reason));
            }
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                let element = new_element(start, &resolved, position)?;
                if root.is_some() {
                    return Err(malformed(position, "content after the root element"));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(EdxmlError::TooLarge {
                        path: path_of(&stack, &element.name),
                        what: "number of elements",
                        actual: elements,
                        limit: MAX_ELEMENTS,
                    });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(EdxmlError::TooLarge {
                        path: path_of(&stack, &element.name),
                        what: "element depth",
                        actual: stack.len() + 1,
                        limit: MAX_DEPTH,
                    });
                }
                if let Some(parent) = stack.last() {
                    if parent.children.len() >= MAX_CHILDREN {
                        return Err(EdxmlError::TooLarge {
                            path: path_of(&stack, &element.name),
                            what: "number of sibling elements",
                            actual: parent.children.len() + 1,
                            limit: MAX_CHILDREN,
                        });
                    }
                    if element.name == "Attachment" && parent.name == "AttachmentEncoded" {
                        attachments += 1;
                        if attachments > MAX_ATTACHMENTS {
                            return Err(EdxmlError::TooLarge {
                                path: path_of(&stack, &element.name),
                                what: "number of attachments",
                                actual: attachments,
                                limit: MAX_ATTACHMENTS,
                            });
                        }
                    }
                }
                if is_empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => root = Some(element),
                    }
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the end tag matches the open element.
                let Some(done) = stack.pop() else {
                    return Err(malformed(position, "end tag without a start tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                append_text(&mut stack, &content, position)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                append_text(&mut stack, &content, position)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch,
                    Ok(None) => match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(malformed(
                                position,
                                format!(
                                    "unknown entity &{};",
                                    other.chars().take(64).collect::<String>()
                                ),
                            ));
                        }
                    },
                    Err(e) => return Err(malformed(position, e.to_string())),
                };
                // A referenced carriage return is stored as the line feed XML reading
                // makes of a literal one, so that writing and reading again is stable.
                let resolved = if resolved == '\r' { '\n' } else { resolved };
                let mut buf = [0u8; 4];
                append_text(&mut stack, resolved.encode_utf8(&mut buf), position)?;
            }
            Event::DocType(_) => {
                return Err(malformed(position, "DTDs (<!DOCTYPE>) are not accepted"));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed(
            reader.buffer_position(),
            format!("unexpected end of input inside <{}>", path_of(&stack, "")),
        ));
    }
    root.ok_or_else(|| malformed(0, "no root element"))
}

fn append_text(stack: &mut [Element], content: &str, position: u64) -> Result<(), EdxmlError> {
    if !super::xml_safe(content) {
        return Err(malformed(
            position,
            "text contains a character XML 1.0 does not allow (a control character)",
        ));
    }
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None => Err(malformed(position, "text outside the root element")),
    }
}
