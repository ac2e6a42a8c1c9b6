"""Economics: tariffs, billing a grid series, the realized-savings ledger, ROI, and the
perfect-foresight optimum the controller is measured against."""
