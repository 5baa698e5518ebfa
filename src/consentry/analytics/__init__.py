"""Analytics: RFM, customer-lifetime-value models, churn risk, cohorts and KPIs."""
