/**
 * A small strict XML reader for the one format pi-image reads: bmaptool's block map.
 *
 * It accepts the XML declaration, comments, elements with quoted attributes, text and the five
 * predefined entities plus numeric character references, and refuses everything else (DTDs,
 * processing instructions, CDATA, unbalanced or mismatched tags, duplicate attributes, text
 * outside the root element), naming the line. Chosen over a dependency because a bmap is
 * machine-written and needs nothing more; being strict, a damaged file is an error, never a
 * silently different block map.
 */

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (not its children's), entities decoded. */
  text: string;
  line: number;
}

export class XmlError extends Error {}

const NAME = /^[A-Za-z_][\w.-]*/;

export function parseXml(source: string): XmlElement {
  let pos = 0;
  const lineAt = (at: number) => source.slice(0, at).split('\n').length;
  const fail = (message: string, at = pos): never => {
    throw new XmlError(`line ${lineAt(at)}: ${message}`);
  };
  const startsWith = (s: string) => source.startsWith(s, pos);
  const skipSpace = () => {
    while (pos < source.length && /\s/.test(source[pos] as string)) pos++;
  };
  const skipComment = () => {
    const end = source.indexOf('-->', pos + 4);
    if (end < 0) fail('unterminated comment');
    if (source.slice(pos + 4, end).includes('--')) fail("'--' inside a comment");
    pos = end + 3;
  };
  const readName = (): string => {
    const m = NAME.exec(source.slice(pos, pos + 256));
    if (!m) return fail('expected a name');
    pos += m[0].length;
    return m[0];
  };
  const decode = (raw: string, at: number): string =>
    raw.replace(/&([^;&<\s]*);?/g, (whole, ref: string) => {
      if (!whole.endsWith(';')) return fail(`bare '&' in text`, at);
      const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
      if (ref in named) return named[ref] as string;
      const num = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(ref);
      if (num) return String.fromCodePoint(num[1] ? parseInt(num[1], 16) : Number(num[2]));
      return fail(`unknown entity &${ref};`, at);
    });

  // Prolog: an optional declaration, then comments and space.
  if (source.charCodeAt(0) === 0xfeff) pos = 1;
  if (startsWith('<?xml')) {
    const end = source.indexOf('?>', pos);
    if (end < 0) fail('unterminated XML declaration');
    pos = end + 2;
  }
  for (;;) {
    skipSpace();
    if (startsWith('<!--')) skipComment();
    else break;
  }
  if (startsWith('<!') || startsWith('<?')) fail('DTDs and processing instructions are not accepted');
  if (!startsWith('<')) fail('expected the root element');

  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (pos < source.length) {
    if (stack.length === 0 && root) {
      skipSpace();
      if (pos >= source.length) break;
      if (startsWith('<!--')) {
        skipComment();
        continue;
      }
      fail('content after the root element');
    }
    if (startsWith('<!--')) {
      skipComment();
    } else if (startsWith('</')) {
      const at = pos;
      pos += 2;
      const name = readName();
      skipSpace();
      if (source[pos] !== '>') fail(`expected '>' after </${name}`);
      pos++;
      const open = stack.pop();
      if (!open || open.name !== name) fail(`</${name}> does not close <${open?.name ?? '(nothing)'}>`, at);
    } else if (startsWith('<!') || startsWith('<?')) {
      fail('CDATA, DTDs and processing instructions are not accepted');
    } else if (startsWith('<')) {
      const at = pos;
      pos++;
      const element: XmlElement = { name: readName(), attributes: {}, children: [], text: '', line: lineAt(at) };
      for (;;) {
        const before = pos;
        skipSpace();
        if (startsWith('/>') || startsWith('>')) break;
        if (pos === before) fail(`expected space before an attribute of <${element.name}>`);
        const attr = readName();
        skipSpace();
        if (source[pos] !== '=') fail(`expected '=' after attribute ${attr}`);
        pos++;
        skipSpace();
        const quote = source[pos];
        if (quote !== '"' && quote !== "'") return fail(`attribute ${attr} is not quoted`);
        const end = source.indexOf(quote, pos + 1);
        if (end < 0) fail(`unterminated value of attribute ${attr}`);
        const raw = source.slice(pos + 1, end);
        if (raw.includes('<')) fail(`'<' in the value of attribute ${attr}`);
        if (attr in element.attributes) fail(`attribute ${attr} given twice on <${element.name}>`);
        element.attributes[attr] = decode(raw, pos);
        pos = end + 1;
      }
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(element);
      else if (!root) root = element;
      else fail('a second root element');
      if (startsWith('/>')) pos += 2;
      else {
        pos++;
        stack.push(element);
      }
    } else {
      const at = pos;
      const end = source.indexOf('<', pos);
      const raw = source.slice(pos, end < 0 ? source.length : end);
      if (raw.includes('>') && raw.includes(']]>')) fail("']]>' in text");
      const open = stack[stack.length - 1];
      if (!open) return fail('text outside the root element');
      open.text += decode(raw, at);
      pos = end < 0 ? source.length : end;
    }
  }
  if (stack.length) fail(`<${stack[stack.length - 1]?.name}> is never closed`);
  if (!root) return fail('no root element');
  return root;
}
