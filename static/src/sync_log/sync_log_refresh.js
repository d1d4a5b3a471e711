/** @odoo-module **/

import { onWillUnmount } from "@odoo/owl";
import { useService } from "@web/core/utils/hooks";
import { patch } from "@web/core/utils/patch";
import { FormController } from "@web/views/form/form_controller";
import { ListController } from "@web/views/list/list_controller";

/**
 * Running sync logs finish without a reload: every SICANTIK user listens on
 * the bus channel of the SICANTIK / User group, where a log sends
 * "sicantik_sync_log/progress" when it starts, advances and ends
 * (sicantik.sync.log._bus_progress). A sync log form, the sync log list and
 * the connector form concerned reload themselves, at most every 1.5 s, and
 * never over unsaved edits.
 */
export const SYNC_LOG_PROGRESS = "sicantik_sync_log/progress";
const MIN_INTERVAL_MS = 1500;

function concerns(resModel, resId, payload) {
    if (resModel === "sicantik.sync.log") {
        return resId === undefined || resId === payload.id;
    }
    if (resModel === "sicantik.config") {
        return resId === payload.config_id;
    }
    return false;
}

function useSyncLogRefresh(getTarget, reload) {
    const busService = useService("bus_service");
    let timer = null;
    let last = 0;
    const onProgress = (payload) => {
        const target = getTarget();
        if (!target || !concerns(target.resModel, target.resId, payload) || timer) {
            return;
        }
        const wait = Math.max(0, last + MIN_INTERVAL_MS - Date.now());
        timer = setTimeout(async () => {
            timer = null;
            last = Date.now();
            await reload();
        }, wait);
    };
    busService.subscribe(SYNC_LOG_PROGRESS, onProgress);
    onWillUnmount(() => {
        busService.unsubscribe(SYNC_LOG_PROGRESS, onProgress);
        clearTimeout(timer);
    });
}

patch(FormController.prototype, {
    setup() {
        super.setup(...arguments);
        if (["sicantik.sync.log", "sicantik.config"].includes(this.props.resModel)) {
            useSyncLogRefresh(
                () => {
                    const root = this.model.root;
                    return root && root.resId && !root.isNew
                        ? { resModel: this.props.resModel, resId: root.resId }
                        : null;
                },
                async () => {
                    const root = this.model.root;
                    if (root && !root.dirty) {
                        await root.load();
                    }
                }
            );
        }
    },
});

patch(ListController.prototype, {
    setup() {
        super.setup(...arguments);
        if (this.props.resModel === "sicantik.sync.log") {
            useSyncLogRefresh(
                () => ({ resModel: this.props.resModel }),
                async () => {
                    const root = this.model.root;
                    if (!root.editedRecord && !root.selection.length) {
                        await this.model.load();
                    }
                }
            );
        }
    },
});
