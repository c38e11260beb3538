/**
 * The jupyter-tre workspace banner: every page of the workspace says which
 * project, purpose and permit the work happens under, and that only released
 * outputs leave. The text is informational; the server side enforces the rules.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import release from './release';

/** The workspace context served by the server extension at `GET <baseUrl>tre/context`. */
export interface ITreContext {
  project: string;
  permit: string;
  purpose: string;
  expiry: string;
  datasets: string[];
  terminals_allowed: boolean;
}

/** Shown on every banner, whether or not the context loaded. */
export const REMINDER =
  'Only outputs released by the output checkers leave this workspace; every execution is recorded.';

export const BANNER_ID = 'tre-banner';

/** Fetch the workspace context; throws on any HTTP or shape error. */
export async function fetchContext(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<ITreContext> {
  const url = URLExt.join(settings.baseUrl, 'tre', 'context');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  const data = (await response.json()) as Partial<ITreContext>;
  // An empty field means the workspace was started without a permit context:
  // say so rather than show a banner with blanks.
  for (const key of ['project', 'permit', 'purpose', 'expiry'] as const) {
    const value = data[key];
    if (typeof value !== 'string' || value.trim() === '') {
      throw new Error(`tre/context: field "${key}" is missing or empty`);
    }
  }
  return data as ITreContext;
}

/** A span with a stable id and class, filled with textContent (never HTML). */
function field(id: string, text: string): HTMLSpanElement {
  const span = document.createElement('span');
  span.id = id;
  span.className = id;
  span.textContent = text;
  return span;
}

/** The banner: one full-width row above the menu bar, wrapping on narrow windows. */
export class TreBanner extends Widget {
  constructor() {
    super();
    this.id = BANNER_ID;
    this.addClass('tre-banner');
    this.node.setAttribute('role', 'status');
    this.node.setAttribute('aria-live', 'polite');
    this.node.setAttribute('aria-label', 'Trusted research environment');
    this._text = document.createElement('div');
    this._text.className = 'tre-banner-text';
    this._text.textContent = 'Loading the workspace context… ' + REMINDER;
    this.node.appendChild(this._text);
  }

  /** Show the project, purpose and permit. */
  showContext(context: ITreContext): void {
    this.removeClass('tre-banner-warning');
    this.addClass('tre-banner-ok');
    this._text.replaceChildren(
      document.createTextNode('Project '),
      field('tre-banner-project', context.project),
      document.createTextNode(' · '),
      field('tre-banner-purpose', context.purpose),
      document.createTextNode(' · permit '),
      field('tre-banner-permit', context.permit),
      document.createTextNode(' until '),
      field('tre-banner-expiry', context.expiry),
      document.createTextNode(' · '),
      field('tre-banner-reminder', REMINDER)
    );
    this._fitHeight();
    const datasets = Array.isArray(context.datasets) ? context.datasets : [];
    this.node.title = datasets.length ? `Datasets: ${datasets.join(', ')}` : '';
  }

  /** Say that the context could not be loaded, keeping the reminder. */
  showError(): void {
    this.removeClass('tre-banner-ok');
    this.addClass('tre-banner-warning');
    this._text.replaceChildren(
      field(
        'tre-banner-error',
        'Warning: the workspace context (project, purpose, permit) could not be loaded.'
      ),
      document.createTextNode(' '),
      field('tre-banner-reminder', REMINDER)
    );
    this._fitHeight();
    this.node.title = '';
  }

  dispose(): void {
    this._observer?.disconnect();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // The shell's box layout sizes the header by min-height, so the banner grows
    // to its wrapped text whenever that changes (window width, fonts, content).
    if (typeof ResizeObserver !== 'undefined' && !this._observer) {
      this._observer = new ResizeObserver(() => this._fitHeight());
      this._observer.observe(this._text);
    }
    this._fitHeight();
  }

  protected onBeforeDetach(msg: Message): void {
    this._observer?.disconnect();
    this._observer = null;
    super.onBeforeDetach(msg);
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this._fitHeight();
  }

  private _fitHeight(): void {
    // Hidden or not laid out yet: a zero width would wrap every word.
    if (!this.isAttached || this.node.clientWidth === 0) {
      return;
    }
    const style = getComputedStyle(this.node);
    const needed = Math.ceil(
      this._text.getBoundingClientRect().height +
        parseFloat(style.paddingTop) +
        parseFloat(style.paddingBottom) +
        parseFloat(style.borderBottomWidth)
    );
    const wanted = `${Math.max(needed, 24)}px`;
    if (this.node.style.minHeight !== wanted) {
      this.node.style.minHeight = wanted;
      this.parent?.fit();
    }
  }

  private _observer: ResizeObserver | null = null;
  private _text: HTMLDivElement;
}

const banner: JupyterFrontEndPlugin<void> = {
  id: '@jupyter-tre/lab:banner',
  description:
    'Shows the project, purpose and permit of this workspace, and that only released outputs leave it.',
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    const widget = new TreBanner();
    // The header area is a full-width row above the menu bar that, unlike the
    // top area, is neither shared with the menu (which would truncate the text)
    // nor hidden by "View > Show Header" in simple mode.
    app.shell.add(widget, 'header', { rank: 10 });
    fetchContext().then(
      context => widget.showContext(context),
      reason => {
        console.error('jupyter-tre: could not load tre/context', reason);
        widget.showError();
      }
    );
  }
};

export default [banner, release];
