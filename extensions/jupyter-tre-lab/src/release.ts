/**
 * "Request release…": from files selected in the file browser, or from one
 * notebook output (first saved as a file under `outputs/` through the contents
 * API, which records the save), open the release form, then create, fill and
 * submit the request through the server extension. The browser sends paths and
 * text only; the review service copies the files from the project folder.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { Contents } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import { submitRelease } from './releaseApi';
import {
  IReleaseFormValue,
  missingField,
  ReleaseForm,
  ReleasePanel
} from './releaseWidgets';

export const COMMAND = 'tre:request-release';
export const OUTPUT_COMMAND = 'tre:request-release-output';
export const OUTPUTS_FOLDER = 'outputs';

const releaseIcon = new LabIcon({
  name: 'jupyter-tre:release',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M5 20h14v-2H5v2zm7-18-7 7h4v6h6v-6h4l-7-7z"/></svg>'
});

/** Show the form until it is complete or cancelled; null when cancelled. */
async function askForDetails(paths: string[]): Promise<IReleaseFormValue | null> {
  let value: IReleaseFormValue = {
    request: { title: '', description: '' },
    files: paths.map(path => ({
      path,
      description: '',
      context: '',
      population: '',
      suppression: ''
    }))
  };
  let error = '';
  for (;;) {
    const form = new ReleaseForm(value, error);
    const result = await showDialog<IReleaseFormValue>({
      title: 'Request release',
      body: form,
      buttons: [
        Dialog.cancelButton(),
        Dialog.okButton({ label: 'Submit for review' })
      ],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept) {
      return null;
    }
    value = result.value ?? form.getValue();
    error = missingField(value);
    if (!error) {
      return value;
    }
  }
}

/** A file name for a saved output: `output-20261123-141503.png`. */
function outputName(extension: string): string {
  const now = new Date();
  const pad = (n: number): string => String(n).padStart(2, '0');
  const stamp =
    `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-` +
    `${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  return `${OUTPUTS_FOLDER}/output-${stamp}.${extension}`;
}

function csvCell(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The first HTML table in `node` as CSV, cell text exactly as displayed. */
export function tableToCsv(table: HTMLTableElement): string {
  const lines: string[] = [];
  for (const row of Array.from(table.rows)) {
    lines.push(
      Array.from(row.cells)
        .map(cell => csvCell((cell.textContent ?? '').trim()))
        .join(',')
    );
  }
  return lines.join('\n') + '\n';
}

/** What of a rendered output can be saved as a file, or null. */
export function savableOutput(
  node: HTMLElement
): { path: string; model: Partial<Contents.IModel> } | null {
  const img = node.querySelector('img');
  const match = img?.src.match(/^data:image\/(png|jpeg);base64,(.*)$/);
  if (match) {
    return {
      path: outputName(match[1] === 'jpeg' ? 'jpg' : 'png'),
      model: { type: 'file', format: 'base64', content: match[2] }
    };
  }
  const table = node.querySelector('table');
  if (table) {
    return {
      path: outputName('csv'),
      model: { type: 'file', format: 'text', content: tableToCsv(table) }
    };
  }
  return null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@jupyter-tre/lab:release',
  description:
    'Request the release of files or notebook outputs through the output checkers, and follow the requests in a side panel.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ILabShell],
  activate: (
    app: JupyterFrontEnd,
    browsers: IFileBrowserFactory,
    labShell: ILabShell | null
  ): void => {
    const panel = new ReleasePanel();
    panel.title.icon = releaseIcon;
    app.shell.add(panel, 'right', { rank: 900 });

    const selectedFiles = (): string[] => {
      const browser = browsers.tracker.currentWidget;
      if (!browser) {
        return [];
      }
      return Array.from(browser.selectedItems())
        .filter(item => item.type !== 'directory')
        .map(item => item.path);
    };

    const requestRelease = async (paths: string[]): Promise<void> => {
      if (!paths.length) {
        await showErrorMessage('Request release', 'Select one or more files first.');
        return;
      }
      const value = await askForDetails(paths);
      if (!value) {
        return;
      }
      try {
        const submitted = await submitRelease(value.request, value.files);
        void showDialog({
          title: 'Release requested',
          body: `Request ${submitted.id} was submitted (${submitted.state}). The output checkers will review it; follow it in the Release requests panel.`,
          buttons: [Dialog.okButton()]
        });
      } catch (reason) {
        await showErrorMessage('Release request failed', (reason as Error).message);
      } finally {
        if (labShell) {
          labShell.activateById(panel.id);
        }
        void panel.refresh();
      }
    };

    app.commands.addCommand(COMMAND, {
      label: 'Request release…',
      caption: 'Ask the output checkers to release these files',
      icon: releaseIcon,
      isEnabled: args =>
        Array.isArray(args.paths) ? args.paths.length > 0 : selectedFiles().length > 0,
      execute: args => {
        const paths = Array.isArray(args.paths)
          ? (args.paths as unknown[]).filter((p): p is string => typeof p === 'string')
          : selectedFiles();
        return requestRelease(paths);
      }
    });

    app.commands.addCommand(OUTPUT_COMMAND, {
      label: 'Request release of this output…',
      caption: `Save this output under ${OUTPUTS_FOLDER}/ and ask the output checkers to release it`,
      icon: releaseIcon,
      execute: async () => {
        const node = app.contextMenuHitTest(n => n.classList.contains('jp-OutputArea-child'));
        const output = node ? savableOutput(node) : null;
        if (!output) {
          await showErrorMessage(
            'Request release',
            'Only image (PNG, JPEG) and table outputs can be saved for release from here. ' +
              'Save other outputs to a file from your code, then request release of that file.'
          );
          return;
        }
        const contents = app.serviceManager.contents;
        try {
          await contents.save(OUTPUTS_FOLDER, { type: 'directory' });
          await contents.save(output.path, output.model);
        } catch (reason) {
          await showErrorMessage(
            'Request release',
            `The output could not be saved as ${output.path}: ${(reason as Error).message}`
          );
          return;
        }
        await requestRelease([output.path]);
      }
    });

    app.contextMenu.addItem({
      command: COMMAND,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      rank: 20
    });
    app.contextMenu.addItem({
      command: OUTPUT_COMMAND,
      selector: '.jp-OutputArea-child',
      rank: 20
    });
  }
};

export default plugin;
