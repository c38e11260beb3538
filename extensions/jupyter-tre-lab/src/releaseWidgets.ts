/**
 * The release form (shown in a dialog) and the side panel of the researcher's
 * requests. All text goes into the DOM through textContent, never as HTML.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  IFileFields,
  IReleaseRequest,
  IRequestFields,
  listRequests
} from './releaseApi';

export const PANEL_ID = 'tre-release-panel';

export interface IReleaseFormValue {
  request: IRequestFields;
  files: IFileFields[];
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

let fieldCounter = 0;

/** A labelled input or textarea with a stable class; `name` is its data-field. */
function labelled(
  parent: HTMLElement,
  label: string,
  name: string,
  value: string,
  multiline: boolean,
  placeholder: string
): HTMLInputElement | HTMLTextAreaElement {
  const id = `tre-release-field-${++fieldCounter}`;
  const wrapper = el('div', 'tre-release-field');
  const labelNode = el('label', 'tre-release-label', label);
  labelNode.htmlFor = id;
  const input = multiline
    ? el('textarea', `tre-release-input tre-release-${name}`)
    : el('input', `tre-release-input tre-release-${name}`);
  input.id = id;
  input.dataset.field = name;
  input.required = true;
  input.value = value;
  input.placeholder = placeholder;
  if (input instanceof HTMLTextAreaElement) {
    input.rows = 2;
  }
  wrapper.append(labelNode, input);
  parent.appendChild(wrapper);
  return input;
}

/** The form: title and description of the request, then per file its description,
 * context (why it is needed), population, and controls (suppression or rounding). */
export class ReleaseForm extends Widget {
  constructor(initial: IReleaseFormValue, error = '') {
    super();
    this.id = 'tre-release-form';
    this.addClass('tre-release-form');
    const intro = el(
      'p',
      'tre-release-intro',
      'Output checkers review every file before it leaves the workspace. ' +
        'All fields are required.'
    );
    this._error = el('p', 'tre-release-form-error', error);
    this._error.setAttribute('role', 'alert');
    this._title = labelled(
      this.node,
      'Title',
      'title',
      initial.request.title,
      false,
      'e.g. Table 2 of the admissions paper'
    );
    this._description = labelled(
      this.node,
      'Description of the request',
      'description',
      initial.request.description,
      true,
      'What these outputs are and what they are for'
    );
    this.node.prepend(intro, this._error);
    for (const file of initial.files) {
      const section = el('fieldset', 'tre-release-file-fields');
      section.dataset.path = file.path;
      section.appendChild(el('legend', 'tre-release-file-path', file.path));
      this._files.push({
        path: file.path,
        description: labelled(
          section,
          'What this file shows',
          'file-description',
          file.description,
          true,
          'e.g. Admissions by region and year'
        ),
        context: labelled(
          section,
          'Context: why it is needed',
          'file-context',
          file.context,
          true,
          'e.g. Table 2 of the paper on MGMT status and survival'
        ),
        population: labelled(
          section,
          'Population: who the numbers describe',
          'file-population',
          file.population,
          true,
          'e.g. Adults admitted 2020–2024 in the cohort'
        ),
        suppression: labelled(
          section,
          'Controls: suppression or rounding applied',
          'file-suppression',
          file.suppression,
          true,
          'e.g. Counts below 10 suppressed, all counts rounded to 5'
        )
      });
      this.node.appendChild(section);
    }
  }

  getValue(): IReleaseFormValue {
    return {
      request: {
        title: this._title.value,
        description: this._description.value
      },
      files: this._files.map(f => ({
        path: f.path,
        description: f.description.value,
        context: f.context.value,
        population: f.population.value,
        suppression: f.suppression.value
      }))
    };
  }

  private _title: HTMLInputElement | HTMLTextAreaElement;
  private _description: HTMLInputElement | HTMLTextAreaElement;
  private _error: HTMLParagraphElement;
  private _files: {
    path: string;
    description: HTMLInputElement | HTMLTextAreaElement;
    context: HTMLInputElement | HTMLTextAreaElement;
    population: HTMLInputElement | HTMLTextAreaElement;
    suppression: HTMLInputElement | HTMLTextAreaElement;
  }[] = [];
}

/** The first missing field of `value`, in words, or '' when everything is filled in. */
export function missingField(value: IReleaseFormValue): string {
  if (!value.request.title.trim()) {
    return 'Give the request a title.';
  }
  if (!value.request.description.trim()) {
    return 'Describe the request.';
  }
  for (const file of value.files) {
    for (const [key, words] of [
      ['description', 'what it shows'],
      ['context', 'why it is needed'],
      ['population', 'which population it describes'],
      ['suppression', 'what suppression or rounding was applied']
    ] as const) {
      if (!file[key].trim()) {
        return `For ${file.path}, say ${words}.`;
      }
    }
  }
  return '';
}

/** The researcher's requests, with each file's automated check verdict. */
export class ReleasePanel extends Widget {
  constructor() {
    super();
    this.id = PANEL_ID;
    this.addClass('tre-release-panel');
    this.title.caption = 'Release requests';
    const header = el('div', 'tre-release-header');
    header.appendChild(el('h2', 'tre-release-heading', 'Release requests'));
    const refresh = el('button', 'tre-release-refresh jp-mod-styled', 'Refresh');
    refresh.id = 'tre-release-refresh';
    refresh.type = 'button';
    refresh.addEventListener('click', () => void this.refresh());
    header.appendChild(refresh);
    this._status = el('p', 'tre-release-status', '');
    this._status.setAttribute('aria-live', 'polite');
    this._list = el('ul', 'tre-release-list');
    this.node.append(header, this._status, this._list);
  }

  /** Reload the list from the review service. */
  async refresh(): Promise<void> {
    this._status.classList.remove('tre-release-error');
    this._status.textContent = 'Loading…';
    let requests: IReleaseRequest[];
    try {
      requests = await listRequests();
    } catch (reason) {
      this._status.classList.add('tre-release-error');
      this._status.textContent = (reason as Error).message;
      return;
    }
    this.show_(requests);
  }

  private show_(requests: IReleaseRequest[]): void {
    this._status.textContent = requests.length
      ? ''
      : 'No release requests yet. Right-click a file and choose "Request release…".';
    this._list.replaceChildren(
      ...requests.map(request => {
        const item = el('li', 'tre-release-request');
        item.dataset.requestId = request.id;
        item.dataset.state = request.state;
        const head = el('div', 'tre-release-request-head');
        head.append(
          el('span', 'tre-release-title', request.title),
          el('span', `tre-release-state tre-release-state-${request.state}`, request.state)
        );
        item.appendChild(head);
        if (request.updated) {
          item.appendChild(el('div', 'tre-release-updated', `Updated ${request.updated}`));
        }
        const files = el('ul', 'tre-release-files');
        for (const file of request.files) {
          const row = el('li', 'tre-release-file');
          row.dataset.name = file.name;
          row.append(
            el('span', 'tre-release-file-name', file.name),
            el(
              'span',
              `tre-release-verdict tre-release-verdict-${file.verdict}`,
              file.verdict
            ),
            el('span', 'tre-release-summary', file.summary)
          );
          files.appendChild(row);
        }
        item.appendChild(files);
        return item;
      })
    );
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private _status: HTMLParagraphElement;
  private _list: HTMLUListElement;
}
