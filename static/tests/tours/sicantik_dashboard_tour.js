/** @odoo-module **/

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * Tours run by tests/test_sicantik_tours.py (HttpCase, headless Chromium).
 *
 * The whole job of a permit office clerk: open the dashboard, follow a
 * figure to its list (which must hold as many permits as the figure said),
 * narrow it with the Critical filter, open a permit, then open the
 * configuration and test the connection to the SICANTIK sandbox.
 */

const counts = {};

function figureCount(key) {
    return {
        content: `Read the "${key}" figure`,
        trigger: `.o_sicantik_dashboard .o_sicantik_figure[data-figure="${key}"] .o_sicantik_count`,
        run() {
            counts[key] = parseInt(this.anchor.textContent.replace(/\D/g, ""), 10);
        },
    };
}

function listHasFigureCount(key) {
    return {
        content: `The list holds as many permits as the "${key}" figure`,
        trigger: ".o_list_view .o_data_row",
        async run() {
            // The list reloads after a filter change: give it a moment.
            let rows = 0;
            for (let attempt = 0; attempt < 50; attempt++) {
                rows = document.querySelectorAll(".o_list_view .o_data_row").length;
                if (rows === counts[key]) {
                    return;
                }
                await new Promise((resolve) => setTimeout(resolve, 100));
            }
            throw new Error(`"${key}": the figure says ${counts[key]}, the list shows ${rows}`);
        },
    };
}

registry.category("web_tour.tours").add("sicantik_dashboard_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps(
            "sicantik_connector.sicantik_connector_menu_root",
            "Open SICANTIK: the dashboard is its first screen"
        ),
        {
            content: "The dashboard is loaded",
            trigger: ".o_sicantik_dashboard .o_sicantik_states .o_sicantik_figure",
        },
        figureCount("critical"),
        figureCount("days_90"),
        {
            content: "Follow the 90-day figure to its list",
            trigger: '.o_sicantik_figure[data-figure="days_90"]',
            run: "click",
        },
        {
            content: "The permit list opened from the dashboard",
            trigger: '.o_breadcrumb:contains("Expiring in 90 days")',
        },
        listHasFigureCount("days_90"),
        {
            content: "Open the search options",
            trigger: ".o_control_panel .o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Use the Critical filter",
            trigger: '.o_filter_menu .o_menu_item:contains("Critical")',
            run: "click",
        },
        {
            content: "The Critical filter is applied",
            trigger: '.o_searchview_facet:contains("Critical")',
        },
        {
            content: "Close the search options",
            trigger: ".o_control_panel .o_searchview_dropdown_toggler",
            run: "click",
        },
        listHasFigureCount("critical"),
        {
            content: "Open a permit",
            trigger: ".o_list_view .o_data_row:first-child .o_data_cell[name=no_surat]",
            run: "click",
        },
        {
            content: "The permit form shows its expiry",
            trigger: ".o_form_view .o_field_widget[name=expiry_state]",
        },
        {
            content: "Open the Configuration menu",
            trigger: 'button[data-menu-xmlid="sicantik_connector.sicantik_config_menu_configuration"]',
            run: "click",
        },
        {
            content: "Open the API configurations",
            trigger: 'a[data-menu-xmlid="sicantik_connector.sicantik_config_menu"]',
            run: "click",
        },
        {
            content: "Open the sandbox configuration",
            trigger: '.o_list_view .o_data_row .o_data_cell:contains("Sandbox")',
            run: "click",
        },
        {
            content: "Press Test Connection",
            trigger: ".o_form_view button[name=action_test_connection]",
            run: "click",
        },
        {
            content: "The sandbox answered",
            trigger: '.o_notification:contains("Connection successful")',
        },
    ],
});

// Ends on the fully drawn dashboard: the test screenshots it on demand.
registry.category("web_tour.tours").add("sicantik_dashboard_screenshot_tour", {
    url: "/odoo/action-sicantik_connector.sicantik_dashboard_action",
    steps: () => [
        {
            content: "Every section of the dashboard is drawn",
            trigger:
                ".o_sicantik_dashboard:has(.o_sicantik_months .o_sicantik_month):has(.o_sicantik_types .o_sicantik_type):has(.o_sicantik_health)",
        },
    ],
});

// End on the drawn Numbers to fix list and on a permit (README pictures).
registry.category("web_tour.tours").add("sicantik_holders_screenshot_tour", {
    url: "/odoo/action-sicantik_connector.action_sicantik_numbers_to_fix",
    steps: () => [
        {
            content: "The holders to fix are listed with their numbers",
            trigger: ".o_list_view .o_data_row .o_field_widget[name=whatsapp_number_state] .badge",
        },
    ],
});

// No url: the test opens the permit it wrote a note on.
registry.category("web_tour.tours").add("sicantik_permit_screenshot_tour", {
    steps: () => [
        {
            content: "The permit, its holder, its note and its activity are drawn",
            trigger:
                ".o_form_view:has(.o_field_widget[name=partner_id] a, .o_field_widget[name=partner_id] input) .o-mail-Chatter:has(.o-mail-Message):has(.o-mail-Activity)",
        },
    ],
});
