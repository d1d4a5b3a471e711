/** @odoo-module **/

import { Component, onWillStart, useState } from "@odoo/owl";
import { deserializeDateTime, formatDateTime } from "@web/core/l10n/dates";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { Layout } from "@web/search/layout";
import { standardActionServiceProps } from "@web/webclient/actions/action_service";
import { formatInteger } from "@web/views/fields/formatters";

/**
 * SICANTIK > Dashboard: expiry figures, sync health and reminders.
 *
 * All figures come from one server call (sicantik.dashboard
 * get_dashboard_data); each carries the window action of the list it
 * stands for, so a click opens exactly what was counted.
 */
export class SicantikDashboard extends Component {
    static template = "sicantik_connector.Dashboard";
    static components = { Layout };
    static props = { ...standardActionServiceProps };

    setup() {
        this.orm = useService("orm");
        this.actionService = useService("action");
        this.state = useState({ data: null, loading: true });
        onWillStart(() => this.load());
    }

    get display() {
        return { controlPanel: {} };
    }

    async load() {
        this.state.loading = true;
        this.state.data = await this.orm.call("sicantik.dashboard", "get_dashboard_data", []);
        this.state.loading = false;
    }

    open(figure) {
        if (figure && figure.action) {
            this.actionService.doAction(figure.action);
        }
    }

    /** Bar height or width in percent of the largest value (at least a sliver). */
    share(count, items) {
        const max = Math.max(...items.map((item) => item.count), 1);
        return count ? Math.max(3, Math.round((100 * count) / max)) : 0;
    }

    number(value) {
        return formatInteger(value || 0);
    }

    when(value) {
        return value ? formatDateTime(deserializeDateTime(value)) : "";
    }

    get stateClass() {
        return {
            expired: "text-bg-danger",
            critical: "text-bg-warning",
            warning: "text-bg-info",
            ok: "text-bg-success",
            none: "text-bg-secondary",
            revoked: "text-bg-dark",
        };
    }

    get healthTitle() {
        return _t("Last %(days)s days", { days: this.state.data.health.days });
    }
}

registry.category("actions").add("sicantik_connector.dashboard", SicantikDashboard);
