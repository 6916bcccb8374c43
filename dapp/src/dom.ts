// Small DOM helpers shared by the page's modules.

/** The element with id `id` (the page's static markup has it). */
export function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

/** A new element with attributes and text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A long hex string shortened for display: 0x1234abcd…ef5678. */
export const short = (hex: string): string => `${hex.slice(0, 10)}…${hex.slice(-6)}`;
