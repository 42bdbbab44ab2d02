// The prim tree (left panel): collapsible, filterable, one row per prim with data-path.

const OPEN_DEPTH = 2; // /Factory and its children start expanded

/** Short glyphs per twin:kind so a plant engineer scans the tree by what things are. */
const KIND_ICONS = {
  robot: 'R', link: 'L', conveyor: 'C', station: 'S', sensor: 'I', source: '+', sink: '−',
};

export class PrimTree {
  /** `onSelect(path)` is called when a row is clicked; `onFocus(path)` on double-click. */
  constructor(container, search, { onSelect, onFocus }) {
    this.container = container;
    this.search = search;
    this.onSelect = onSelect;
    this.onFocus = onFocus;
    this.nodes = new Map(); // path -> { prim, element, row, parent, children: [] }
    this.selected = null;
    this.root = null;

    container.addEventListener('click', (event) => {
      const row = event.target.closest('.tree-row');
      if (!row) return;
      if (event.target.closest('.caret')) this.#toggle(this.nodes.get(row.dataset.path));
      else this.onSelect(row.dataset.path);
    });
    container.addEventListener('dblclick', (event) => {
      const row = event.target.closest('.tree-row');
      if (row && !event.target.closest('.caret')) this.onFocus(row.dataset.path);
    });
    search.addEventListener('input', () => this.#filter(search.value.trim().toLowerCase()));
  }

  /** Build the tree from GET /api/scene's {path, name, type, kind, children}. */
  build(rootPrim) {
    this.nodes.clear();
    this.root = this.#buildNode(rootPrim, null, 0);
    this.container.replaceChildren(this.root.element);
    if (this.search.value) this.#filter(this.search.value.trim().toLowerCase());
  }

  /** Mark a row selected, open its ancestors and scroll it into view (null clears). */
  setSelected(path) {
    this.nodes.get(this.selected)?.row.classList.remove('selected');
    this.selected = path;
    const node = this.nodes.get(path);
    if (!node) return;
    node.row.classList.add('selected');
    for (let parent = node.parent; parent; parent = parent.parent) this.#setOpen(parent, true);
    node.row.scrollIntoView({ block: 'nearest' });
  }

  #buildNode(prim, parent, depth) {
    const element = document.createElement('div');
    element.className = 'tree-node';
    element.setAttribute('role', 'treeitem');

    const row = document.createElement('div');
    row.className = 'tree-row';
    row.dataset.path = prim.path;
    row.title = `${prim.path}\n${prim.type || 'typeless'}${prim.kind ? ` · ${prim.kind}` : ''}`;
    row.style.setProperty('--depth', depth);
    const caret = document.createElement('span');
    caret.className = 'caret';
    const icon = document.createElement('span');
    icon.className = `icon kind-${prim.kind ?? 'none'}`;
    icon.textContent = KIND_ICONS[prim.kind] ?? '';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = prim.name || prim.path;
    const type = document.createElement('span');
    type.className = 'type';
    type.textContent = prim.kind ?? prim.type ?? '';
    row.append(caret, icon, name, type);
    element.append(row);

    const node = { prim, element, row, parent, children: [], childList: null };
    this.nodes.set(prim.path, node);
    if (prim.children?.length) {
      node.childList = document.createElement('div');
      node.childList.className = 'tree-children';
      node.childList.setAttribute('role', 'group');
      for (const child of prim.children) {
        const childNode = this.#buildNode(child, node, depth + 1);
        node.children.push(childNode);
        node.childList.append(childNode.element);
      }
      element.append(node.childList);
      this.#setOpen(node, depth < OPEN_DEPTH);
    } else {
      element.classList.add('leaf');
    }
    return node;
  }

  #toggle(node) {
    if (node?.childList) this.#setOpen(node, !node.element.classList.contains('open'));
  }

  #setOpen(node, open) {
    if (!node.childList) return;
    node.element.classList.toggle('open', open);
    node.element.setAttribute('aria-expanded', String(open));
  }

  /**
   * Show prims whose name contains the query (or whose path does, for a query with a '/'),
   * with their ancestors opened. Matching names only keeps a match's descendants out.
   */
  #filter(query) {
    this.container.classList.toggle('filtering', query !== '');
    const field = query.includes('/') ? 'path' : 'name';
    const visit = (node) => {
      const selfMatch = query !== '' && String(node.prim[field] ?? '').toLowerCase().includes(query);
      let childMatch = false;
      for (const child of node.children) childMatch = visit(child) || childMatch;
      const visible = query === '' || selfMatch || childMatch;
      node.element.hidden = !visible;
      node.row.classList.toggle('match', selfMatch);
      node.element.classList.toggle('search-open', childMatch);
      return selfMatch || childMatch;
    };
    if (this.root) visit(this.root);
  }
}
